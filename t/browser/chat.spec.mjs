// chat.spec.mjs: the web client in a real browser (Debian's chromium driven
// by playwright-core): two users chat both ways, typing, ticks, presence.
//
//   CHAT_URL=http://127.0.0.1:8080/ node t/browser/chat.spec.mjs
//
// Environment (lib.mjs): CHAT_URL (the page; required),
// TEST_NGINX_JWT_SECRET (the HS256 secret, default "secret"), CHROMIUM
// (default /usr/bin/chromium), SCREENSHOT_DIR (default t/servroot/browser),
// CHAT_USER_SUFFIX (appended to alice and bob). Prints "ok N - ..." per
// check; exits 1 at the first failed one with what was expected, 2 when it
// cannot start at all.

import {
    base, suffix, TIMEOUT, launch, check, done, shot, signIn, hasText,
    attrIs, tickIs, pages, token,
} from './lib.mjs';

const alice = 'alice' + suffix;
const bob = 'bob' + suffix;

const browser = await launch();

const viewport = { width: 900, height: 560 };

// /dev/token: only the embedded development configuration has it
const devToken = await fetch(new URL('/dev/token?user=probe' + suffix, base))
    .then((r) => r.ok, () => false);

await check('without a token the sign-in form shows'
            + (devToken ? '' : '; no /dev/token here'), async () => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    pages.push(['signin', page]);
    await page.goto(base);
    await page.locator('#signin').waitFor({ timeout: TIMEOUT });
    await page.fill('#dev-user', alice);
    if (!devToken) {
        await page.click('#dev-form button');
        await hasText(page, '#signin-error', 'not available');
    }
    await shot(page, '00-signin');
    pages.pop();
    await ctx.close();
});

await check('one-click sign-in with /dev/token'
            + (devToken ? '' : ' (mocked here)'), async () => {
    const ctx = await browser.newContext({ viewport });
    const page = await ctx.newPage();
    await page.route('**/dev/token?*', (route) => {
        if (devToken) {
            return route.continue();
        }
        const u = new URL(route.request().url()).searchParams.get('user');
        route.fulfill({ status: 200, contentType: 'application/json',
                        body: JSON.stringify({ token: token(u) }) });
    });
    await page.goto(base);
    await page.fill('#dev-user', 'dave' + suffix);
    await page.click('#dev-form button');
    await hasText(page, '#me-name', 'dave' + suffix);
    await hasText(page, '#conn.ok', 'connected');
    await ctx.close();
});

const ctxA = await browser.newContext({ viewport });
const ctxB = await browser.newContext({ viewport });
const pa = await signIn(ctxA, alice, 'Alice');

await check('the page loads, alice is signed in and connected', async () => {
    await hasText(pa, '#me-name', 'Alice');
    await hasText(pa, '#conn.ok', 'connected');
});

const pb = await signIn(ctxB, bob, 'Bob');

await check('bob is signed in and connected', async () => {
    await hasText(pb, '#conn.ok', 'connected');
});

await check('alice creates a direct conversation with bob', async () => {
    await pa.fill('#new-members', bob);
    await pa.click('#new-form button');
    await hasText(pa, '#chat-title', bob);
    await hasText(pa, '#conversations .conv.active', bob);
});

await check('bob sees the new conversation in his list', async () => {
    await hasText(pb, '#conversations .conv', alice);
});

await check('bob opens it: a request from alice, which he accepts',
            async () => {
    await pb.click('#conversations .conv');
    await hasText(pb, '#request-text', 'asks to chat with you');
    await pb.click('#accept');
    await pb.locator('#request').waitFor({ state: 'hidden',
                                           timeout: TIMEOUT });
});

await check('alice sees bob online (presence dot)', async () => {
    await attrIs(pa, '#peer-dot', 'data-online', '1');
    await hasText(pa, '#chat-sub', 'online');
});

await check('bob opens the conversation and sees alice typing', async () => {
    await pb.click('#conversations .conv');
    await hasText(pb, '#chat-title', alice);
    await pa.fill('#text', '');
    await pa.waitForTimeout(2100);      // one typing event per 2 s
    await pa.type('#text', 'Hello Bob', { delay: 40 });
    await hasText(pb, '#typing', alice + ' is typing');
});

await shot(pb, '01-bob-sees-typing');

await check('alice\'s message shows at once, then gets its seq', async () => {
    await pa.press('#text', 'Enter');
    await hasText(pa, '#list .msg.mine', 'Hello Bob');
    await pa.waitForSelector('#list .msg.mine[data-seq="1"]',
                             { timeout: TIMEOUT });
    const count = await pa.locator('#list .msg', { hasText: 'Hello Bob' })
        .count();
    if (count !== 1) {
        throw new Error('reconciled by clientMsgId: expected 1 bubble, got '
                        + count);
    }
    if (await pa.locator('#list .msg.pending').count() !== 0) {
        throw new Error('a message stayed pending');
    }
});

await check('bob receives it live, and the typing line goes', async () => {
    await hasText(pb, '#list .msg[data-seq="1"]', 'Hello Bob');
    await pb.waitForFunction(() =>
        document.getElementById('typing').textContent === '',
    null, { timeout: TIMEOUT });
});

await check('alice\'s tick turns to read (bob has it open)', async () => {
    await tickIs(pa, 'Hello Bob', 'read');
});

await check('bob answers; alice gets it live', async () => {
    await pb.type('#text', 'Hi Alice!', { delay: 20 });
    await pb.press('#text', 'Enter');
    await hasText(pa, '#list .msg[data-seq="2"]', 'Hi Alice!');
    await tickIs(pb, 'Hi Alice!', 'read');
});

await check('alice switches away: bob\'s next message is delivered, '
            + 'unread 1 in her list', async () => {
    await pa.fill('#new-members', 'carol' + suffix + ', ' + bob);
    await pa.fill('#new-name', 'Team');
    await pa.click('#new-form button');
    await hasText(pa, '#chat-title', 'Team');
    await pb.fill('#text', 'Are you there?');
    await pb.press('#text', 'Enter');
    await tickIs(pb, 'Are you there?', 'delivered');
    await hasText(pa, '#conversations .conv', 'Are you there?');
    await hasText(pa, '#conversations .conv .badge', '1');
});

await shot(pa, '02-alice-unread');
await shot(pb, '03-bob-delivered');

await check('alice comes back: read, the badge goes', async () => {
    await pa.locator('#conversations .conv', { hasText: bob }).click();
    await hasText(pa, '#list .msg[data-seq="3"]', 'Are you there?');
    await tickIs(pb, 'Are you there?', 'read');
    if (await pa.locator('#conversations .conv .badge').count() !== 0) {
        throw new Error('an unread badge is still shown');
    }
});

await check('bob sends 55 more; alice gets them all live, in order',
            async () => {
    for (let i = 1; i <= 55; i++) {
        await pb.fill('#text', 'm' + i);
        await pb.press('#text', 'Enter');
    }
    await hasText(pa, '#list .msg[data-seq="58"]', 'm55');
    const seqs = await pa.$$eval('#list .msg[data-seq]',
                                 (l) => l.map((e) => +e.dataset.seq));
    const want = Array.from({ length: 58 }, (_, i) => i + 1);
    if (seqs.join() !== want.join()) {
        throw new Error('seqs in the page: ' + seqs.join());
    }
});

await check('a reload shows the latest history page', async () => {
    await pa.reload();
    await hasText(pa, '#chat-title', bob);
    await hasText(pa, '#list .msg[data-seq="58"]', 'm55');
    await attrIs(pa, '#peer-dot', 'data-online', '1');
    if (await pa.locator('#list .msg[data-seq="1"]').count() !== 0) {
        throw new Error('seq 1 is there before scrolling back');
    }
});

await check('scrolling back loads the earlier messages', async () => {
    await pa.evaluate(() => {
        document.getElementById('messages').scrollTop = 0;
    });
    await hasText(pa, '#list .msg[data-seq="1"]', 'Hello Bob');
    const n = await pa.locator('#list .msg[data-seq]').count();
    if (n !== 58) {
        throw new Error('expected 58 messages after scrolling back, got ' + n);
    }
});

await check('history has the ticks of alice\'s message', async () => {
    // sent < delivered < read: bob has read it
    const want = process.env.CHAT_HISTORY_TICKS === 'lenient'
        ? ['sent', 'delivered', 'read'] : ['read'];
    await pa.waitForFunction((w) => {
        const k = document.querySelector('#list .msg[data-seq="1"] .tick');
        return k && w.includes(k.dataset.status);
    }, want, { timeout: TIMEOUT });
});

await shot(pa, '04-alice-scrolled-back');

// alice's connections go through the test from here on: it can cut them
let blockWs = false;
const sockets = [];
await pa.routeWebSocket(/\/ws\/chat/, (ws) => {
    if (blockWs) {
        ws.close({ code: 1011, reason: 'test: network down' });
        return;
    }
    ws.connectToServer();
    sockets.push(ws);
});

await check('alice\'s connection drops and comes back; the gap is filled '
            + 'from history', async () => {
    await pa.reload();
    await hasText(pa, '#conn.ok', 'connected');
    await hasText(pa, '#list .msg[data-seq="58"]', 'm55');
    if (sockets.length !== 1) {
        throw new Error('the page did not connect through the route');
    }
    blockWs = true;
    await sockets[0].close({ code: 1011, reason: 'test: cut' });
    await hasText(pa, '#conn', 'offline');
    await pb.fill('#text', 'while you were away');
    await pb.press('#text', 'Enter');
    await pb.fill('#text', 'and once more');
    await pb.press('#text', 'Enter');
    await pb.waitForSelector('#list .msg.mine[data-seq="60"]',
                             { timeout: TIMEOUT });
    blockWs = false;
    await pa.locator('#conn.ok').waitFor({ timeout: 15000 });
    await hasText(pa, '#list .msg[data-seq="59"]', 'while you were away');
    await hasText(pa, '#list .msg[data-seq="60"]', 'and once more');
    await tickIs(pb, 'and once more', 'read');
});

await shot(pa, '05-alice-after-reconnect');
await shot(pb, '06-bob-chat');

await check('bob leaves: alice sees him offline with a last seen', async () => {
    await ctxB.close();
    pages.pop();
    await attrIs(pa, '#peer-dot', 'data-online', '0');
    await hasText(pa, '#chat-sub', 'last seen');
});

await shot(pa, '07-bob-offline');

await done();
