// server.mjs: Socket.IO with its Redis adapter, the way a Node team would
// run it as a peer in make bench: node's cluster module, one worker per
// core (or SIO_WORKERS) on one port, WebSocket transport only (so no
// sticky sessions are needed), rooms shared through Redis.
//
//   node server.mjs PORT REDIS_PORT
//
//   SIO_WORKERS=N SIO_PING_MS=MS node server.mjs PORT REDIS_PORT
//
// A client emits "join" with a list of rooms (acknowledged: the session
// is ready), "send" with a room and a body (acknowledged once the message
// went to the adapter: the receipt); every member of the room receives
// the event "m" with the body.

import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { createClient } from 'redis';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';

const port = Number(process.argv[2]);
const redisPort = Number(process.argv[3]);

if (!port || !redisPort) {
    console.error('usage: node server.mjs PORT REDIS_PORT');
    process.exit(2);
}

if (cluster.isPrimary) {
    const n = Number(process.env.SIO_WORKERS) || availableParallelism();

    for (let i = 0; i < n; i++) {
        cluster.fork();
    }

    cluster.on('exit', (w, code, signal) => {
        console.error(`worker ${w.process.pid} exited: ${code ?? signal}`);
    });

    for (const sig of ['SIGTERM', 'SIGINT']) {
        process.on(sig, () => {
            for (const id in cluster.workers) {
                cluster.workers[id].process.kill('SIGTERM');
            }
            process.exit(0);
        });
    }

} else {
    const pub = createClient({ url: `redis://127.0.0.1:${redisPort}` });
    const sub = pub.duplicate();

    for (const c of [pub, sub]) {
        c.on('error', (e) => console.error(`redis: ${e.message}`));
    }

    await Promise.all([pub.connect(), sub.connect()]);

    // SIO_PING_MS: Engine.IO's ping interval and timeout (25 s and 20 s
    // by default; the test makes them short)
    const ping = Number(process.env.SIO_PING_MS);
    const io = new Server({
        pingInterval: ping || 25000,
        pingTimeout: ping || 20000,
        transports: ['websocket'],
        serveClient: false,
        adapter: createAdapter(pub, sub),
    });

    io.on('connection', (socket) => {
        socket.on('join', (rooms, ack) => {
            if (!Array.isArray(rooms) || typeof ack !== 'function') {
                socket.disconnect(true);
                return;
            }
            socket.join(rooms);
            ack();
        });

        socket.on('send', (room, body, ack) => {
            if (typeof room !== 'string' || typeof ack !== 'function') {
                socket.disconnect(true);
                return;
            }
            io.to(room).emit('m', body);
            ack();
        });
    });

    io.listen(port);
}
