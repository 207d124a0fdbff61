// client.spec.mjs: the web client at desktop (1280x800) and phone (390x844)
// sizes in chromium: unread never counts one's own messages (two devices of
// one user), display names, grouped bubbles, multi-line input, safe links,
// day separators, unread in the tab title, group ticks, the content limit,
// errors as sentences, presence while disconnected, and the outbox (sent
// again when the connection is back, why a message failed, retry, delete).
//
//   CHAT_URL=http://127.0.0.1:8080/ node t/browser/client.spec.mjs
//
// Environment as for chat.spec.mjs (lib.mjs). Users: ann (two devices),
// ben, cat (a phone), each with CHAT_USER_SUFFIX.

import {
    base, suffix, TIMEOUT, launch, check, done, shot, signIn, hasText,
    attrIs, until, tickOf, tickIs, expect, pages, token,
} from './lib.mjs';

const desktop = { width: 1280, height: 800 };
const phone = { width: 390, height: 844 };

const ann = 'ann' + suffix;
const ben = 'ben' + suffix;
const cat = 'cat' + suffix;
const dan = 'dan' + suffix;

const browser = await launch();

// ann's first device goes through the test's WebSocket route: it can cut
// the connection, keep SENDs from the server or answer them with an error
const net = { block: false, dropSends: false, fakeError: null };
const sockets = [];
const ctxA1 = await browser.newContext({ viewport: desktop });
await ctxA1.routeWebSocket(/\/ws\/chat/, (ws) => {
    if (net.block) {
        ws.close({ code: 1011, reason: 'test: network down' });
        return;
    }
    const server = ws.connectToServer();
    let errorsSub = null;
    ws.onMessage((msg) => {
        const text = String(msg);
        const sub = /^SUBSCRIBE\n[\s\S]*?\n\n/.exec(text);
        if (sub && /\ndestination:\/user\/queue\/errors\n/.test(sub[0])) {
            errorsSub = /\nid:([^\n]*)\n/.exec(sub[0])[1];
        }
        if (/^SEND\n/.test(text) && text.includes('/app/chat.send')) {
            if (net.dropSends) {
                return;
            }
            if (net.fakeError) {
                const body = JSON.parse(text.slice(text.indexOf('\n\n') + 2,
                                                   text.lastIndexOf('\0')));
                const receipt = /\nreceipt:([^\n]*)\n/.exec(text)[1];
                const e = JSON.stringify({
                    type: 'error', code: net.fakeError,
                    message: 'test: ' + net.fakeError,
                    clientMsgId: body.clientMsgId, receiptId: receipt,
                });
                ws.send('MESSAGE\ndestination:/user/queue/errors\n'
                        + 'subscription:' + errorsSub + '\nmessage-id:t'
                        + Date.now() + '\ncontent-type:application/json\n\n'
                        + e + '\0');
                return;
            }
        }
        server.send(msg);
    });
    sockets.push(ws);
});
const a1 = await ctxA1.newPage();
pages.push(['ann-1', a1]);
a1.on('pageerror', (e) => console.log('# ann-1 page error: ' + e.message));
await a1.goto(new URL('/#token=' + token(ann, 'Ann'), base).href);

const ctxA2 = await browser.newContext({ viewport: desktop });
const a2 = await signIn(ctxA2, ann, 'Ann', 'ann-2');
const ctxB = await browser.newContext({ viewport: desktop });
const b = await signIn(ctxB, ben, 'Ben');

const bubbles = (page, text) =>
    page.locator('#list .msg', { hasText: text }).count();

async function send(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
}

async function openConv(page, name) {
    await page.locator('#conversations .conv-title',
                       { hasText: new RegExp('^' + name + '$') }).click();
    await hasText(page, '#chat-title', name);
}

await check('ann (two devices) and ben are connected', async () => {
    for (const p of [a1, a2, b]) {
        await hasText(p, '#conn.ok', 'connected');
    }
});

await check('ann makes a group with ben and cat, and a direct chat with '
            + 'ben; everyone\'s lists show them', async () => {
    await a1.fill('#new-members', ben);
    await a1.click('#new-form button');
    await hasText(a1, '#chat-title', 'Ben');
    await a1.fill('#new-members', ben + ', ' + cat);
    await a1.fill('#new-name', 'Trio');
    await a1.click('#new-form button');
    await hasText(a1, '#chat-title', 'Trio');
    await hasText(a2, '#conversations .conv', 'Trio');
    await hasText(b, '#conversations .conv', 'Trio');
    await hasText(b, '#conversations .conv', 'Ann');
});

await check('ben accepts ann\'s direct chat (a request until then)',
            async () => {
    await openConv(b, 'Ann');
    await hasText(b, '#request-text', 'asks to chat with you');
    await b.click('#accept');
    await b.locator('#request').waitFor({ state: 'hidden',
                                          timeout: TIMEOUT });
});

await check('her own only message is not unread on her other device; '
            + 'ben has 1 unread, also in his tab title', async () => {
    await send(a1, 'first');
    await a1.waitForSelector('#list .msg.mine[data-seq="1"]',
                             { timeout: TIMEOUT });
    await hasText(a2, '#conversations .conv', 'You: first');
    await hasText(b, '#conversations .conv .badge', '1');
    await until(b, () => document.title === '(1) ngx_chat');
    expect(await a2.locator('#conversations .conv .badge').count() === 0,
           'ann\'s other device shows a badge for her own message');
    expect(await a2.title() === 'ngx_chat', 'ann-2 title: '
           + await a2.title());
    await a2.reload();
    await hasText(a2, '#conversations .conv', 'You: first');
    expect(await a2.locator('#conversations .conv .badge').count() === 0,
           'after a reload (the server\'s count) a badge shows');
});

await check('ben reads it: display names, not ids; his title goes back',
            async () => {
    await openConv(b, 'Trio');
    // a request (ann added him before he accepted her direct chat): the
    // client reads it once he accepts
    await b.click('#accept');
    await hasText(b, '#list .msg .from', 'Ann');
    await until(b, () => document.title === 'ngx_chat');
    await hasText(b, '#chat-sub', 'Ann, Ben, ' + cat);
});

await check('Shift+Enter makes a new line; consecutive bubbles of ben are '
            + 'grouped', async () => {
    await b.fill('#text', 'line one');
    await b.press('#text', 'Shift+Enter');
    await b.type('#text', 'line two');
    await b.press('#text', 'Enter');
    await send(b, 'and a third');
    await hasText(a1, '#list .msg[data-seq="3"]', 'and a third');
    const two = await a1.locator('#list .msg[data-seq="2"] .text')
        .textContent();
    expect(two === 'line one\nline two', 'multi-line text: '
           + JSON.stringify(two));
    const g = await a1.evaluate(() => {
        const m2 = document.querySelector('#list .msg[data-seq="2"]');
        const m3 = document.querySelector('#list .msg[data-seq="3"]');
        return [m2.classList.contains('cont'), !!m2.querySelector('.from'),
                m3.classList.contains('cont'), !!m3.querySelector('.from'),
                m2.querySelector('.from') &&
                m2.querySelector('.from').textContent];
    });
    expect(g.join() === 'false,true,true,false,Ben', 'grouping: ' + g);
});

await check('links are clickable and safe; javascript: is not', async () => {
    await send(a1, 'see https://example.com/a?b=1, not javascript:alert(1)');
    await hasText(b, '#list .msg .text a', 'https://example.com/a?b=1');
    const links = await b.$$eval('#list .msg .text a', (l) => l.map((a) =>
        [a.getAttribute('href'), a.rel, a.target].join(' ')));
    expect(links.length === 1
           && links[0] === 'https://example.com/a?b=1 noopener noreferrer '
                           + '_blank', 'links: ' + JSON.stringify(links));
    expect(await b.locator('a[href^="javascript"]').count() === 0,
           'a javascript: link');
});

await check('a group tick: read by ben, not delivered to cat; the tooltip '
            + 'says who', async () => {
    await until(a1, () => {
        const m = document.querySelector('#list .msg.mine[data-seq="1"]');
        const k = m && m.querySelector('.tick');
        return k && /Read by Ben/.test(k.title);
    });
    const t = await tickOf(a1, 'first');
    expect(t.status === 'sent', 'status ' + t.status + ' with cat away');
    expect(new RegExp('Not delivered yet to ' + cat).test(t.title),
           'tooltip: ' + t.title);
});

await shot(a1, 'client-01-desktop-group');

const ctxC = await browser.newContext({ viewport: phone, isMobile: true,
                                        hasTouch: true });
const c = await signIn(ctxC, cat, 'Cat');

await check('phone: the list fills the screen, the chat is hidden',
            async () => {
    await hasText(c, '#conn.ok', 'connected');
    await hasText(c, '#conversations .conv', 'Trio');
    const box = await c.locator('#sidebar').boundingBox();
    expect(box && box.width >= 380, 'sidebar width ' + (box && box.width));
    expect(!(await c.locator('#chat').isVisible()), 'the chat is visible');
});

await shot(c, 'client-02-phone-list');

await check('phone: a conversation takes the screen, with a back button; '
            + 'group ticks turn read', async () => {
    await c.locator('#conversations .conv', { hasText: 'Trio' }).click();
    await hasText(c, '#chat-title', 'Trio');
    await c.click('#accept');            // a request: read once accepted
    expect(!(await c.locator('#sidebar').isVisible()),
           'the list is still visible');
    expect(await c.locator('#back').isVisible(), 'no back button');
    await hasText(c, '#list .msg[data-seq="3"]', 'and a third');
    const w = await c.locator('#messages').boundingBox();
    expect(w && w.width >= 380, 'messages width ' + (w && w.width));
    await tickIs(a1, 'first', 'read');
    const t = await tickOf(a1, 'first');
    expect(/^Read by everyone/.test(t.title), 'tooltip: ' + t.title);
});

await shot(c, 'client-03-phone-chat');

await check('phone: back shows the list again', async () => {
    await c.click('#back');
    await c.locator('#sidebar').waitFor({ state: 'visible',
                                          timeout: TIMEOUT });
    expect(!(await c.locator('#chat').isVisible()), 'the chat is visible');
});

await check('day separators: "Today", and "Yesterday" a day later',
            async () => {
    await hasText(a1, '#list .day', 'Today');
    const ctxT = await browser.newContext({ viewport: desktop });
    const t = await ctxT.newPage();
    await t.clock.install({ time: new Date(Date.now() + 86400000) });
    await t.goto(new URL('/#token=' + token(ben, 'Ben', 3 * 86400),
                         base).href);
    await openConv(t, 'Trio');
    await hasText(t, '#list .day', 'Yesterday');
    await ctxT.close();
});

await check('text over the server\'s limit (from CONNECTED) is refused '
            + 'before sending, with why', async () => {
    const before = await a1.locator('#list .msg').count();
    await a1.fill('#text', 'é'.repeat(9000));     // 18,000 bytes
    await hasText(a1, '#composer-error', 'too long');
    await hasText(a1, '#composer-error', '16,384');
    expect(await a1.locator('#send').isDisabled(), 'Send is enabled');
    await a1.press('#text', 'Enter');
    await a1.waitForTimeout(300);
    expect(await a1.locator('#list .msg').count() === before,
           'a bubble was added');
    await a1.fill('#text', '');
    await a1.locator('#composer-error').waitFor({ state: 'hidden',
                                                  timeout: TIMEOUT });
});

await shot(a1, 'client-04-too-long');

await check('a failed request says a sentence, not "Failed to fetch"',
            async () => {
    await a1.route('**/chat/api/conversations', (r) => r.abort());
    await a1.fill('#new-members', dan);
    await a1.click('#new-form button');
    await hasText(a1, '#toast', 'cannot be reached');
    const t = await a1.locator('#toast').textContent();
    expect(!/Failed to fetch/i.test(t), 'toast: ' + t);
    await a1.unroute('**/chat/api/conversations');
});

await check('the direct chat: ben online; disconnected it says '
            + '"connecting…", not the last state', async () => {
    await openConv(a1, 'Ben');
    await attrIs(a1, '#peer-dot', 'data-online', '1');
    net.block = true;
    await sockets[sockets.length - 1].close({ code: 1011,
                                              reason: 'test: cut' });
    await hasText(a1, '#conn', 'offline');
    await hasText(a1, '#chat-sub', 'connecting…');
    await attrIs(a1, '#peer-dot', 'data-online', '0');
});

await check('offline: a message waits in the outbox, says why, offers '
            + 'retry and delete', async () => {
    await send(a1, 'sent while offline');
    await hasText(a1, '#list .msg.failed', 'sent while offline');
    await hasText(a1, '#list .msg.failed .why', 'Not connected');
    await send(a1, 'to be deleted');
    const m = a1.locator('#list .msg.failed', { hasText: 'to be deleted' });
    expect(await m.locator('.retry').count() === 1, 'no retry button');
    await m.locator('.delete').click();
    await a1.waitForFunction(() => !Array.from(
        document.querySelectorAll('#list .msg')).some((e) =>
        e.textContent.includes('to be deleted')), null, { timeout: TIMEOUT });
});

await shot(a1, 'client-05-offline-outbox');

await check('a reload keeps the outbox', async () => {
    const id = await a1.locator('#list .msg', { hasText: 'sent while offline' })
        .getAttribute('data-client-msg-id');
    await a1.reload();
    await hasText(a1, '#chat-title', 'Ben');
    await a1.waitForSelector('#list .msg.failed[data-client-msg-id="' + id
                             + '"]', { timeout: TIMEOUT });
    await hasText(a1, '#list .msg.failed .why', 'Not connected');
});

await check('back online: it is sent by itself with the same clientMsgId, '
            + 'once', async () => {
    const id = await a1.locator('#list .msg', { hasText: 'sent while offline' })
        .getAttribute('data-client-msg-id');
    net.block = false;
    await a1.locator('#conn.ok').waitFor({ timeout: 15000 });
    await a1.waitForSelector('#list .msg.mine[data-client-msg-id="' + id
                             + '"][data-seq]', { timeout: TIMEOUT });
    await tickIs(a1, 'sent while offline', 'delivered');
    await openConv(b, 'Ann');
    await hasText(b, '#list .msg', 'sent while offline');
    expect(await bubbles(b, 'sent while offline') === 1, 'not once at ben');
    expect(await bubbles(b, 'to be deleted') === 0, 'the deleted one came');
    await hasText(a1, '#chat-sub', 'online');
});

await check('the socket closes before the RECEIPT: said, then sent again '
            + 'once', async () => {
    net.dropSends = true;
    await send(a1, 'lost in transit');
    await hasText(a1, '#list .msg.pending', 'lost in transit');
    net.block = true;
    net.dropSends = false;
    await sockets[sockets.length - 1].close({ code: 1011,
                                              reason: 'test: cut' });
    await hasText(a1, '#list .msg.failed .why', 'lost before the server');
    net.block = false;
    await a1.locator('#conn.ok').waitFor({ timeout: 15000 });
    await hasText(b, '#list .msg', 'lost in transit');
    await tickIs(a1, 'lost in transit', 'read');
    expect(await bubbles(b, 'lost in transit') === 1, 'not once at ben');
    expect(await bubbles(a1, 'lost in transit') === 1, 'not once at ann');
});

await check('the server cannot store it (unavailable): said, then tried '
            + 'again by itself', async () => {
    net.fakeError = 'unavailable';
    await send(a1, 'try again later');
    await hasText(a1, '#list .msg.failed .why', 'could not store it');
    net.fakeError = null;
    await hasText(b, '#list .msg', 'try again later');
    await a1.waitForFunction(() => !document.querySelector(
        '#list .msg.failed'), null, { timeout: TIMEOUT });
});

await check('a refused message stays failed but never below newer ones',
            async () => {
    net.fakeError = 'not_member';
    await send(a1, 'refused');
    await hasText(a1, '#list .msg.failed .why', 'no longer a member');
    net.fakeError = null;
    await send(b, 'newer one');
    await send(b, 'newest one');
    await hasText(a1, '#list .msg', 'newest one');
    const order = await a1.$$eval('#list .msg .text',
                                  (l) => l.map((e) => e.textContent));
    expect(order.indexOf('refused') < order.indexOf('newer one'),
           'order: ' + order.join(' | '));
    await shot(a1, 'client-06-refused');
    await a1.locator('#list .msg.failed .delete').click();
    await a1.waitForFunction(() => !document.querySelector(
        '#list .msg.failed'), null, { timeout: TIMEOUT });
});

await check('reconnecting with an empty conversation open: no error',
            async () => {
    await a1.fill('#new-members', dan);
    await a1.click('#new-form button');
    await hasText(a1, '#chat-title', dan);
    await a1.evaluate(() => {
        document.getElementById('toast').hidden = true;
    });
    await sockets[sockets.length - 1].close({ code: 1011,
                                              reason: 'test: cut' });
    await hasText(a1, '#conn', 'offline');
    await a1.locator('#conn.ok').waitFor({ timeout: 15000 });
    await a1.waitForTimeout(1000);
    expect(await a1.locator('#toast').isHidden(), 'a toast: '
           + await a1.locator('#toast').textContent());
});

await check('ann renames herself (PUT /users/me); ben sees the new name',
            async () => {
    a1.once('dialog', (d) => d.accept('Ann Smith'));
    await a1.click('#me-name');
    await hasText(a1, '#me-name', 'Ann Smith');
    await b.reload();
    await hasText(b, '#conversations .conv', 'Ann Smith');
});

await shot(a1, 'client-07-desktop-direct');
await shot(b, 'client-08-desktop-ben');

await done();
