// The real sockjs-client with @stomp/stompjs, in node (t/118-sockjs.t):
// for each transport forced in turn, a SockJS user chats with a WebSocket
// user both ways, in order, with RECEIPTs.
//
//   CHAT_URL     http://127.0.0.1:<port>/ws/chat
//   TOKEN_A      the SockJS user's JWT (passcode of CONNECT)
//   TOKEN_B      the WebSocket user's
//   CONV         their conversation
//   TRANSPORTS   websocket,xhr-streaming,xhr-polling,eventsource (default)
//   COUNT        messages each way (5)
//   BULK         then, on xhr-streaming, that many 4 KB messages to it
//   NO_KEEPALIVE a new TCP connection for every HTTP request (so that with
//                several workers the requests of a session land on all)
//   ONE_BY_ONE   each SEND waits for the RECEIPT of the one before (one
//                xhr_send, and one poll, per message)

import { createRequire } from 'node:module';
import { Client } from '@stomp/stompjs';

const require = createRequire(import.meta.url);

if (process.env.NO_KEEPALIVE) {
    // sockjs-client's node driver uses the global agent
    const http = require('node:http');
    http.globalAgent = new http.Agent({ keepAlive: false });
}
const SockJS = require('sockjs-client');
const FayeWebSocket = require('faye-websocket').Client;

const url = process.env.CHAT_URL;
const conv = process.env.CONV;
const count = Number(process.env.COUNT || 5);
const transports = (process.env.TRANSPORTS
                    || 'websocket,xhr-streaming,xhr-polling,eventsource').split(',');

let failed = 0;

function check(ok, what) {
    console.log(`${ok ? 'ok' : 'not ok'} - ${what}`);
    if (!ok) {
        failed++;
    }
}

function timeout(ms, what) {
    return new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
}

// a connected client and what it receives on /user/queue/messages
function connect(factory, token, name) {
    const inbox = [];
    const waiters = [];
    const client = new Client({
        webSocketFactory: factory,
        connectHeaders: { passcode: token, host: 'localhost' },
        reconnectDelay: 0,
        heartbeatIncoming: 10000,
        heartbeatOutgoing: 10000,
    });

    const connected = new Promise((resolve, reject) => {
        client.onConnect = () => {
            client.subscribe('/user/queue/messages', (m) => {
                inbox.push(JSON.parse(m.body));
                while (waiters.length) {
                    waiters.shift()();
                }
            });
            resolve();
        };
        client.onStompError = (f) =>
            reject(new Error(`${name}: ERROR ${f.headers.message}`));
        client.onWebSocketClose = (e) =>
            reject(new Error(`${name}: closed ${e.code} ${e.reason}`));
    });

    client.activate();

    return {
        client,
        inbox,
        connected,
        // resolves once n messages of conv starting with prefix came
        async waitFor(prefix, n) {
            while (inbox.filter((m) => m.conversationId === conv
                                && m.content.startsWith(prefix + ' '))
                   .length < n) {
                await new Promise((r) => waiters.push(r));
            }
        },
    };
}

// sends n messages with receipts; resolves once every RECEIPT came
async function sendAll(who, prefix, n) {
    const receipts = [];
    for (let i = 1; i <= n; i++) {
        const id = `${prefix}-r${i}`;
        receipts.push(new Promise((r) => who.client.watchForReceipt(id, r)));
        who.client.publish({
            destination: '/app/chat.send',
            headers: { receipt: id, 'content-type': 'application/json' },
            body: JSON.stringify({ conversationId: conv,
                                   content: `${prefix} ${i}` }),
        });
        if (process.env.ONE_BY_ONE) {
            await receipts[i - 1];
        }
    }
    return Promise.all(receipts);
}

function contents(who, prefix) {
    return who.inbox.filter((m) => m.conversationId === conv
                                   && m.content.startsWith(prefix + ' '))
        .map((m) => m.content);
}

async function round(transport) {
    const want = (p) => Array.from({ length: count }, (_, i) => `${p} ${i + 1}`);
    const a = connect(() => new SockJS(url, null,
                                       { transports: [transport] }),
                      process.env.TOKEN_A, `sockjs ${transport}`);
    const b = connect(() => new FayeWebSocket(url.replace(/^http/, 'ws'),
                                              ['v12.stomp']),
                      process.env.TOKEN_B, 'websocket');

    await Promise.race([Promise.all([a.connected, b.connected]),
                        timeout(10000, `${transport}: CONNECTED`)]);

    check(a.client.webSocket && a.client.webSocket.transport === transport,
          `${transport}: the SockJS client uses ${transport} `
          + `(${a.client.webSocket && a.client.webSocket.transport})`);

    // SockJS -> WebSocket
    const pa = `${transport} a->b`;
    const ra = await Promise.race([sendAll(a, pa, count),
                                   timeout(10000, `${transport}: receipts`)]);
    check(ra.length === count,
          `${transport}: ${ra.length} RECEIPTs to the SockJS sender`);
    await Promise.race([b.waitFor(pa, count), timeout(10000, 'b receives')]);
    check(JSON.stringify(contents(b, pa)) === JSON.stringify(want(pa)),
          `${transport}: the WebSocket user got them in order: `
          + JSON.stringify(contents(b, pa)));

    // WebSocket -> SockJS
    const pb = `${transport} b->a`;
    const rb = await Promise.race([sendAll(b, pb, count),
                                   timeout(10000, `${transport}: receipts`)]);
    check(rb.length === count,
          `${transport}: ${rb.length} RECEIPTs to the WebSocket sender`);
    await Promise.race([a.waitFor(pb, count),
                        timeout(10000, 'a receives')]);
    check(JSON.stringify(contents(a, pb)) === JSON.stringify(want(pb)),
          `${transport}: the SockJS user got them in order: `
          + JSON.stringify(contents(a, pb)));

    if (process.env.BULK && transport === 'xhr-streaming') {
        // more than one stream's 128 KiB: the client opens the next one
        // and nothing is lost
        const n = Number(process.env.BULK);
        const pc = `${transport} bulk`;
        const pad = 'x'.repeat(4000);
        const wantBulk = Array.from({ length: n },
                                    (_, i) => `${pc} ${i + 1} ${pad}`);
        for (let i = 1; i <= n; i++) {
            b.client.publish({
                destination: '/app/chat.send',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ conversationId: conv,
                                       content: `${pc} ${i} ${pad}` }),
            });
        }
        await Promise.race([a.waitFor(pc, n), timeout(20000, 'bulk')]);
        check(JSON.stringify(contents(a, pc)) === JSON.stringify(wantBulk),
              `${transport}: ${n} messages of 4 KB (past the stream limit) `
              + `all came, in order (${contents(a, pc).length})`);
    }

    a.client.onWebSocketClose = () => {};
    b.client.onWebSocketClose = () => {};
    await a.client.deactivate();
    await b.client.deactivate();
}

for (const t of transports) {
    try {
        await round(t);
    } catch (e) {
        check(false, `${t}: ${e.message}`);
    }
}

console.log(failed ? `# ${failed} SockJS checks failed`
                   : '# all SockJS checks passed');
process.exit(failed ? 1 : 0);
