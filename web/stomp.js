// stomp.js: a small STOMP 1.2 client over a browser WebSocket (no build step).
//
//   const s = new StompClient(url, { headers, heartbeat: [10000, 10000] });
//   s.onconnect = (connectedFrame) => { s.subscribe(dest, (frame) => ...) };
//   s.onclose = (event) => ...;      // the socket is gone (any reason)
//   s.onerror = (errorFrame) => ...; // an ERROR frame (the server closes next)
//   s.connect(); s.send(dest, body, headers); s.disconnect();
//
// A frame is { command, headers: {name: value}, body: string }. Several
// frames in one WebSocket message, frames split over several messages, text
// and binary messages and heart-beat EOLs are all handled.

const NUL = 0;
const LF = 10;
const CR = 13;

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

function unescapeHeader(s) {
    return s.replace(/\\(.)/g, (m, c) =>
        c === 'n' ? '\n' : c === 'r' ? '\r' : c === 'c' ? ':' : c);
}

function escapeHeader(s) {
    return String(s).replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
        .replace(/\r/g, '\\r').replace(/:/g, '\\c');
}

function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
}

export class StompClient {
    constructor(url, opts = {}) {
        this.url = url;
        this.headers = opts.headers || {};
        this.heartbeat = opts.heartbeat || [10000, 10000];
        this.connectTimeout = opts.connectTimeout || 10000;
        this.ws = null;
        this.connected = false;
        this.buf = new Uint8Array(0);
        this.subs = new Map();
        this.nextId = 1;
        this.timers = [];
        this.lastIn = 0;
        this.onconnect = null;
        this.onclose = null;
        this.onerror = null;
        this.onreceipt = null;
    }

    connect() {
        const ws = new WebSocket(this.url,
                                 ['v12.stomp', 'v11.stomp', 'v10.stomp']);
        ws.binaryType = 'arraybuffer';
        this.ws = ws;
        ws.onopen = () => {
            // no CONNECTED in time: give up on this socket
            this.timers.push(setTimeout(() => {
                if (!this.connected && this.ws === ws) {
                    ws.close(4000, 'no CONNECTED');
                }
            }, this.connectTimeout));
            const h = Object.assign({
                'accept-version': '1.2,1.1,1.0',
                'host': location.hostname,
                'heart-beat': this.heartbeat.join(','),
            }, this.headers);
            this.transmit('CONNECT', h, '', true);
        };
        ws.onmessage = (ev) => this.receive(ev.data);
        ws.onclose = (ev) => this.closed(ev);
    }

    disconnect() {
        if (this.ws && this.connected) {
            this.transmit('DISCONNECT', {}, '');
        }
        if (this.ws) {
            this.ws.close(1000, 'bye');
        }
    }

    subscribe(destination, callback, headers = {}) {
        const id = 's' + this.nextId++;
        this.subs.set(id, callback);
        this.transmit('SUBSCRIBE',
                      Object.assign({ id, destination, ack: 'auto' }, headers),
                      '');
        return id;
    }

    unsubscribe(id) {
        this.subs.delete(id);
        this.transmit('UNSUBSCRIBE', { id }, '');
    }

    send(destination, body, headers = {}) {
        if (typeof body !== 'string') {
            body = JSON.stringify(body);
            headers = Object.assign({ 'content-type': 'application/json' },
                                    headers);
        }
        return this.transmit('SEND', Object.assign({ destination }, headers),
                             body);
    }

    transmit(command, headers, body, raw = false) {
        if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
            return false;
        }
        const bytes = utf8.encode(body);
        let s = command + '\n';
        for (const [k, v] of Object.entries(headers)) {
            s += raw ? k + ':' + v + '\n'
                     : escapeHeader(k) + ':' + escapeHeader(v) + '\n';
        }
        if (bytes.length) {
            s += 'content-length:' + bytes.length + '\n';
        }
        const head = utf8.encode(s + '\n');
        const frame = new Uint8Array(head.length + bytes.length + 1);
        frame.set(head, 0);
        frame.set(bytes, head.length);
        frame[frame.length - 1] = NUL;
        this.ws.send(utf8d.decode(frame));
        return true;
    }

    receive(data) {
        this.lastIn = Date.now();
        const chunk = typeof data === 'string' ? utf8.encode(data)
                                               : new Uint8Array(data);
        this.buf = this.buf.length ? concat(this.buf, chunk) : chunk;
        for (;;) {
            const frame = this.parse();
            if (frame === null) {
                break;
            }
            this.dispatch(frame);
        }
    }

    // one frame from the buffer, or null when it is not complete yet
    parse() {
        let b = this.buf;
        let i = 0;
        while (i < b.length && (b[i] === LF || b[i] === CR)) {
            i++;                            // heart-beats
        }
        if (i) {
            b = this.buf = b.subarray(i);
        }
        let end = -1;
        for (let j = 0; j + 1 < b.length; j++) {
            if (b[j] === LF && b[j + 1] === LF) {
                end = j;
                break;
            }
            if (b[j] === LF && b[j + 1] === CR && b[j + 2] === LF) {
                end = j;
                break;
            }
        }
        if (end < 0) {
            return null;
        }
        const bodyStart = end + (b[end + 1] === CR ? 3 : 2);
        const lines = utf8d.decode(b.subarray(0, end)).split('\n')
            .map((l) => l.replace(/\r$/, ''));
        const command = lines.shift();
        const headers = {};
        for (const line of lines) {
            const c = line.indexOf(':');
            if (c < 0) {
                continue;
            }
            let k = line.slice(0, c);
            let v = line.slice(c + 1);
            if (command !== 'CONNECTED') {
                k = unescapeHeader(k);
                v = unescapeHeader(v);
            }
            if (!(k in headers)) {
                headers[k] = v;             // the first one wins
            }
        }
        let bodyEnd;
        if ('content-length' in headers) {
            bodyEnd = bodyStart + parseInt(headers['content-length'], 10);
            if (b.length < bodyEnd + 1) {
                return null;
            }
        } else {
            bodyEnd = b.indexOf(NUL, bodyStart);
            if (bodyEnd < 0) {
                return null;
            }
        }
        const body = utf8d.decode(b.subarray(bodyStart, bodyEnd));
        this.buf = b.subarray(bodyEnd + 1);
        return { command, headers, body };
    }

    dispatch(frame) {
        switch (frame.command) {
        case 'CONNECTED':
            this.connected = true;
            this.startHeartbeat(frame.headers['heart-beat']);
            if (this.onconnect) {
                this.onconnect(frame);
            }
            break;
        case 'MESSAGE': {
            const cb = this.subs.get(frame.headers.subscription);
            if (cb) {
                cb(frame);
            }
            break;
        }
        case 'RECEIPT':
            if (this.onreceipt) {
                this.onreceipt(frame);
            }
            break;
        case 'ERROR':
            if (this.onerror) {
                this.onerror(frame);
            }
            break;
        }
    }

    // heart-beat "sx,sy" of the server against ours "cx,cy" (STOMP 1.2)
    startHeartbeat(value) {
        const [sx, sy] = (value || '0,0').split(',').map((n) => +n || 0);
        const [cx, cy] = this.heartbeat;
        if (cx && sy) {
            const every = Math.max(cx, sy);
            this.timers.push(setInterval(() => {
                if (this.ws && this.ws.readyState === WebSocket.OPEN) {
                    this.ws.send('\n');
                }
            }, every));
        }
        if (cy && sx) {
            const limit = Math.max(cy, sx) * 2 + 1000;
            this.timers.push(setInterval(() => {
                if (Date.now() - this.lastIn > limit && this.ws) {
                    this.ws.close(4000, 'server silent');
                }
            }, limit / 2));
        }
    }

    closed(ev) {
        this.connected = false;
        this.timers.forEach(clearTimeout);
        this.timers = [];
        this.subs.clear();
        this.buf = new Uint8Array(0);
        this.ws = null;
        if (this.onclose) {
            this.onclose(ev);
        }
    }
}
