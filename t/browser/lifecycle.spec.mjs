// lifecycle.spec.mjs: issue 20 in a real browser: alice and bob reply,
// edit, delete, react, send an image and find an old message by a word;
// carol, offline all along, signs in and sees the same state.
//
//   CHAT_URL=http://127.0.0.1:8080/ node t/browser/lifecycle.spec.mjs
//
// Needs the gateway with chat_attachments at /chat/api/attachments and a
// persistence worker (search reads PostgreSQL). Environment: lib.mjs.

import {
    suffix, TIMEOUT, launch, check, done, shot, signIn, hasText, until,
} from './lib.mjs';

const alice = 'alice' + suffix;
const bob = 'bob' + suffix;
const carol = 'carol' + suffix;

// a 1x1 red PNG
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlE'
                        + 'QVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==',
                        'base64');

const browser = await launch();
const viewport = { width: 900, height: 640 };

const pa = await signIn(await browser.newContext({ viewport }), alice,
                        'Alice');
const pb = await signIn(await browser.newContext({ viewport }), bob, 'Bob');

// searches for q until the results show text in sel: the persistence
// worker writes within a second or so, changes too
async function searchUntil(page, q, sel, text) {
    const deadline = Date.now() + 3 * TIMEOUT;
    for (;;) {
        await page.fill('#search-q', q);
        await page.press('#search-q', 'Enter');
        try {
            await page.locator('#search-results ' + sel, { hasText: text })
                .first().waitFor({ state: 'visible', timeout: 1500 });
            return;
        } catch (e) {
            if (Date.now() > deadline) {
                throw e;
            }
        }
    }
}

const bubble = (page, text) => page.locator('#list .msg', { hasText: text })
    .first();

await check('alice makes a group of the three and says something', async () => {
    await hasText(pa, '#conn.ok', 'connected');
    await pa.fill('#new-members', bob + ', ' + carol);
    await pa.fill('#new-name', 'Lifecycle');
    await pa.click('#new-form button');
    await hasText(pa, '#chat-title', 'Lifecycle');
    await pa.fill('#text', 'the plan: meet at the lighthuose');
    await pa.press('#text', 'Enter');
    await pa.waitForSelector('#list .msg.mine[data-seq="1"]',
                             { timeout: TIMEOUT });
});

await check('bob opens it and replies to it: the quote shows', async () => {
    await hasText(pb, '#conversations .conv', 'Lifecycle');
    await pb.click('#conversations .conv');
    await bubble(pb, 'lighthuose').hover();
    await bubble(pb, 'lighthuose').locator('button.reply').click();
    await hasText(pb, '#compose-mode', 'Replying to');
    await pb.fill('#text', 'sounds good');
    await pb.press('#text', 'Enter');
    await hasText(pa, '#list .msg .quote', 'lighthuose');
});

await check('alice edits her typo: both see the new text, "edited"',
            async () => {
    await bubble(pa, 'lighthuose').locator('button.edit').click();
    await hasText(pa, '#compose-mode', 'Editing');
    await pa.fill('#text', 'the plan: meet at the lighthouse');
    await pa.press('#text', 'Enter');
    for (const p of [pa, pb]) {
        await hasText(p, '#list .msg[data-seq="1"] .text', 'lighthouse');
        await hasText(p, '#list .msg[data-seq="1"] .meta', 'edited');
    }
});

await check('bob reacts: a count of 1 on both sides', async () => {
    await bubble(pb, 'lighthouse').locator('button.react').click();
    for (const p of [pa, pb]) {
        await hasText(p, '#list .msg[data-seq="1"] .reaction', '1');
    }
});

await check('alice sends an image: bob sees it', async () => {
    await pa.setInputFiles('#file', { name: 'red.png', mimeType: 'image/png',
                                      buffer: PNG });
    await hasText(pb, '#list .msg', 'red.png');
    await until(pb, () => {
        const img = document.querySelector('#list .msg img.attachment');
        return img && img.src.startsWith('blob:') && img.naturalWidth === 1;
    });
});

await check('alice sends a secret and deletes it: a placeholder for both',
            async () => {
    await pa.fill('#text', 'my secret is xyzzy');
    await pa.press('#text', 'Enter');
    await hasText(pb, '#list .msg', 'xyzzy');
    await bubble(pa, 'xyzzy').locator('button.del').click();
    for (const p of [pa, pb]) {
        await hasText(p, '#list .msg.deleted', 'deleted');
        await until(p, () => !document.getElementById('list').textContent
            .includes('xyzzy'));
    }
});

await shot(pb, '10-lifecycle-bob');

await check('bob finds the old message by a word', async () => {
    await searchUntil(pb, 'lighthouse', '.result', 'meet at the');
    await searchUntil(pb, 'xyzzy', '.none', 'Nothing found');
});

await check('carol, offline until now, sees the same state', async () => {
    const pc = await signIn(await browser.newContext({ viewport }), carol,
                            'Carol');
    await hasText(pc, '#conversations .conv', 'Lifecycle');
    await hasText(pc, '#conversations .conv .conv-last', 'deleted a message');
    await pc.click('#conversations .conv');
    await hasText(pc, '#list .msg[data-seq="1"] .text', 'lighthouse');
    await hasText(pc, '#list .msg[data-seq="1"] .meta', 'edited');
    await hasText(pc, '#list .msg[data-seq="1"] .reaction', '1');
    await hasText(pc, '#list .msg .quote', 'lighthouse');
    await hasText(pc, '#list .msg.deleted', 'deleted');
    await until(pc, () => {
        const img = document.querySelector('#list .msg img.attachment');
        return img && img.naturalWidth === 1;
    });
    const t = await pc.locator('#list').textContent();
    if (t.includes('xyzzy') || t.includes('lighthuose')) {
        throw new Error('carol sees an old content: ' + t);
    }
    await shot(pc, '11-lifecycle-carol');
});

await done();
