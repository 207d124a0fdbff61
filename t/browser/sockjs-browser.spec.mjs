// SockJS in Chromium with WebSocket blocked (t/118-sockjs.t): the page's
// sockjs-client falls back to xhr-streaming by itself and its STOMP
// session (@stomp/stompjs) chats with a WebSocket user (node), both ways.
//
//   CHAT_URL     http://127.0.0.1:<port>/ (the page: sockjs-test/)
//   CONV         the conversation of sjb_alice (page) and sjb_bob (node)

import { createRequire } from 'node:module';
import { Client } from '@stomp/stompjs';
import { launch, check, done, expect, pages, token, base, TIMEOUT }
    from './lib.mjs';

const require = createRequire(import.meta.url);
const FayeWebSocket = require('faye-websocket').Client;

const conv = process.env.CONV;
const browser = await launch();
const page = await browser.newPage();
pages.push(['sockjs', page]);

// no WebSocket in this browser: the constructor is gone and the
// handshakes would fail anyway
await page.addInitScript(() => {
    Object.defineProperty(window, 'WebSocket', { value: undefined });
    Object.defineProperty(window, 'MozWebSocket', { value: undefined });
});
await page.route(/\/websocket$/, (route) => route.abort());

// the WebSocket user, in node
const inbox = [];
const bob = new Client({
    webSocketFactory: () => new FayeWebSocket(
        base.replace(/^http/, 'ws') + 'ws/chat', ['v12.stomp']),
    connectHeaders: { passcode: token('sjb_bob'), host: 'localhost' },
    reconnectDelay: 0,
});

await check('the WebSocket user connects', () => new Promise((ok, no) => {
    bob.onConnect = () => {
        bob.subscribe('/user/queue/messages',
                      (m) => inbox.push(JSON.parse(m.body)));
        ok();
    };
    bob.onStompError = (f) => no(new Error(f.headers.message));
    bob.activate();
}));

await check('the page loads sockjs-client and stompjs, without WebSocket',
            async () => {
    await page.goto(base + 'sockjs-test/');
    await page.waitForFunction(() => window.SockJS && window.StompJs,
                               null, { timeout: TIMEOUT });
    expect(await page.evaluate(() => window.WebSocket === undefined),
           'WebSocket is still there');
});

await check('new SockJS("/ws/chat") connects through xhr-streaming',
            async () => {
    const transport = await page.evaluate((jwt) => new Promise((ok, no) => {
        window.got = [];
        window.client = new StompJs.Client({
            webSocketFactory: () => new SockJS('/ws/chat'),
            connectHeaders: { passcode: jwt, host: 'localhost' },
            reconnectDelay: 0,
        });
        window.client.onConnect = () => {
            window.client.subscribe('/user/queue/messages',
                                    (m) => window.got.push(JSON.parse(m.body)));
            ok(window.client.webSocket.transport);
        };
        window.client.onStompError = (f) => no(new Error(f.headers.message));
        window.client.onWebSocketClose = (e) =>
            no(new Error('closed ' + e.code + ' ' + e.reason));
        window.client.activate();
        setTimeout(() => no(new Error('no CONNECTED')), 10000);
    }), token('sjb_alice'));
    expect(transport === 'xhr-streaming',
           'the transport is ' + transport);
});

await check('the page sends with a RECEIPT, the WebSocket user gets it',
            async () => {
    await page.evaluate((c) => new Promise((ok) => {
        window.client.watchForReceipt('b1', ok);
        window.client.publish({
            destination: '/app/chat.send',
            headers: { receipt: 'b1', 'content-type': 'application/json' },
            body: JSON.stringify({ conversationId: c,
                                   content: 'from chromium' }),
        });
    }), conv);
    const t0 = Date.now();
    while (!inbox.some((m) => m.content === 'from chromium')) {
        expect(Date.now() - t0 < TIMEOUT, 'nothing came');
        await new Promise((r) => setTimeout(r, 50));
    }
});

await check('the WebSocket user answers, the page gets it', async () => {
    bob.publish({
        destination: '/app/chat.send',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ conversationId: conv,
                               content: 'from node' }),
    });
    await page.waitForFunction(
        () => window.got.some((m) => m.content === 'from node'),
        null, { timeout: TIMEOUT });
});

await bob.deactivate();
await done();
