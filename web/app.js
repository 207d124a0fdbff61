// app.js: the ngx_chat web client: sign in, conversations, live messages,
// typing, presence, receipts, history (PROTOCOL.md is the contract).

import { StompClient } from './stomp.js';

const API = '/chat/api';
const WS_PATH = '/ws/chat';
const PAGE = 50;                    // messages per history request
const TYPING_SEND_EVERY = 2000;     // ms between our typing events
const TYPING_SHOW_FOR = 4000;       // ms a typing event is shown

const $ = (id) => document.getElementById(id);

const state = {
    token: null,
    me: null,
    convs: new Map(),               // conversationId -> conversation
    order: [],                      // conversationIds, most recent first
    open: null,                     // the open conversationId
    presence: new Map(),            // userId -> {online, lastSeen}
    presenceSubs: new Set(),        // userIds subscribed on this connection
    stomp: null,
    everConnected: false,
    retry: 0,
    lastTypingSent: 0,
};

/* ---------------------------------------------------------------- tokens */

function jwtClaims(token) {
    try {
        const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
        const json = decodeURIComponent(Array.from(atob(p), (c) =>
            '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
        return JSON.parse(json);
    } catch (e) {
        return null;
    }
}

function useToken(token) {
    const claims = jwtClaims(token);
    if (!claims || typeof claims.sub !== 'string') {
        return 'that is not a JWT with a "sub" claim';
    }
    if (claims.exp && claims.exp * 1000 < Date.now()) {
        return 'that token has expired';
    }
    // per tab: two windows of one browser can be two users
    sessionStorage.setItem('chat.token', token);
    state.token = token;
    state.me = claims.sub;
    state.myName = claims.name || claims.sub;
    start();
    return null;
}

function signOut(message) {
    sessionStorage.removeItem('chat.token');
    if (state.stomp) {
        state.stomp.onclose = null;
        state.stomp.disconnect();
    }
    if (message) {
        sessionStorage.setItem('chat.signin-error', message);
    }
    history.replaceState(null, '', location.pathname);
    location.reload();
}

function showSignIn() {
    $('signin').hidden = false;
    $('app').hidden = true;
    const err = sessionStorage.getItem('chat.signin-error');
    if (err) {
        $('signin-error').textContent = err;
        sessionStorage.removeItem('chat.signin-error');
    }
    $('dev-form').onsubmit = async (ev) => {
        ev.preventDefault();
        const user = $('dev-user').value.trim();
        let res;
        try {
            res = await fetch('/dev/token?user=' + encodeURIComponent(user));
        } catch (e) {
            res = null;
        }
        const body = res && res.ok ? await res.json().catch(() => null) : null;
        if (!body || !body.token) {
            $('signin-error').textContent = 'Development sign-in is not '
                + 'available on this server: paste a token instead.';
            return;
        }
        const err = useToken(body.token);
        $('signin-error').textContent = err || '';
    };
    $('token-form').onsubmit = (ev) => {
        ev.preventDefault();
        const err = useToken($('token-input').value.trim());
        $('signin-error').textContent = err || '';
    };
}

/* ------------------------------------------------------------------- API */

async function api(method, path, body) {
    const res = await fetch(API + path, {
        method,
        headers: Object.assign({ Authorization: 'Bearer ' + state.token },
            body ? { 'Content-Type': 'application/json' } : {}),
        body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status === 401) {
        signOut('The server did not accept the token: sign in again.');
        throw new Error('unauthorized');
    }
    const data = res.status === 204 ? null
                                    : await res.json().catch(() => null);
    if (!res.ok) {
        const msg = data && data.error ? data.error.message : res.statusText;
        throw new Error(msg || 'HTTP ' + res.status);
    }
    return data;
}

/* --------------------------------------------------------- conversations */

function conv(c) {
    let x = state.convs.get(c.conversationId);
    if (!x) {
        x = {
            id: c.conversationId, msgs: new Map(), pending: new Map(),
            marks: new Map(), typing: new Map(), loaded: false,
            hasMore: false, loadingMore: false, maxSeq: 0, minSeq: 0,
            lastSeq: 0, lastReadSeq: 0, unread: 0, lastMessage: null,
        };
        state.convs.set(c.conversationId, x);
    }
    for (const k of ['type', 'name', 'members']) {
        if (c[k] !== undefined) {
            x[k] = c[k];
        }
    }
    for (const k of ['lastSeq', 'lastReadSeq']) {
        if (c[k] !== undefined) {
            x[k] = Math.max(x[k], c[k]);
        }
    }
    if (c.unread !== undefined) {
        x.unread = Math.max(0, x.lastSeq - x.lastReadSeq);
    }
    if (c.lastMessage && (!x.lastMessage
                          || c.lastMessage.seq >= x.lastMessage.seq)) {
        x.lastMessage = c.lastMessage;
    }
    return x;
}

function others(c) {
    return (c.members || []).filter((u) => u !== state.me);
}

function title(c) {
    if (c.type === 'direct') {
        return others(c)[0] || state.me;
    }
    return c.name || others(c).join(', ') || 'group';
}

async function loadConversations() {
    const data = await api('GET', '/conversations');
    state.order = [];
    for (const c of data.conversations) {
        state.order.push(conv(c).id);
    }
    watchPresence();
    renderList();
    if (state.open) {
        renderChat();
    }
}

async function createConversation(members, name) {
    const type = members.length === 1 && !name ? 'direct' : 'group';
    const body = { type, members };
    if (name) {
        body.name = name;
    }
    const c = await api('POST', '/conversations', body);
    conv(c);
    await loadConversations();
    openConversation(c.conversationId);
}

function touch(c) {
    state.order = [c.id].concat(state.order.filter((id) => id !== c.id));
}

/* --------------------------------------------------------------- history */

function addMessage(c, m) {
    const old = c.msgs.get(m.seq);
    if (old && old.status && !m.status) {
        m.status = old.status;
    }
    c.msgs.set(m.seq, m);
    if (m.clientMsgId && m.senderId === state.me) {
        c.pending.delete(m.clientMsgId);
    }
    c.minSeq = c.minSeq ? Math.min(c.minSeq, m.seq) : m.seq;
    c.maxSeq = Math.max(c.maxSeq, m.seq);
    if (m.seq > c.lastSeq) {
        c.lastSeq = m.seq;
    }
    if (!c.lastMessage || m.seq >= c.lastMessage.seq) {
        c.lastMessage = m;
    }
    if (m.senderId === state.me) {
        c.lastReadSeq = Math.max(c.lastReadSeq, m.seq);
    }
    c.unread = Math.max(0, c.lastSeq - c.lastReadSeq);
}

async function loadLatest(c) {
    const data = await api('GET', '/conversations/' + encodeURIComponent(c.id)
                           + '/messages?limit=' + PAGE);
    data.messages.forEach((m) => addMessage(c, m));
    c.hasMore = data.hasMore;
    c.loaded = true;
}

async function loadEarlier(c) {
    if (!c.hasMore || c.loadingMore || !c.minSeq) {
        return;
    }
    c.loadingMore = true;
    $('more').hidden = false;
    try {
        const data = await api('GET', '/conversations/'
                               + encodeURIComponent(c.id) + '/messages?before='
                               + c.minSeq + '&limit=' + PAGE);
        data.messages.forEach((m) => addMessage(c, m));
        c.hasMore = data.hasMore;
    } finally {
        c.loadingMore = false;
        $('more').hidden = true;
    }
    if (state.open === c.id) {
        const list = $('messages');
        const before = list.scrollHeight - list.scrollTop;
        renderMessages(c);
        list.scrollTop = list.scrollHeight - before;
    }
}

// everything after the highest seq we hold (a gap, or after a reconnect)
async function fillGap(c) {
    if (c.filling) {
        c.refill = true;
        return;
    }
    c.filling = true;
    try {
        do {
            c.refill = false;
            let more = true;
            while (more) {
                const data = await api('GET', '/conversations/'
                                       + encodeURIComponent(c.id)
                                       + '/messages?after=' + c.maxSeq
                                       + '&limit=200');
                data.messages.forEach((m) => addMessage(c, m));
                more = data.hasMore && data.messages.length > 0;
            }
        } while (c.refill);
    } finally {
        c.filling = false;
    }
    changed(c);
    markRead(c);
}

/* -------------------------------------------------------------- realtime */

function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const s = new StompClient(proto + '//' + location.host + WS_PATH, {
        headers: { passcode: state.token },
        heartbeat: [10000, 10000],
    });
    state.stomp = s;
    state.presenceSubs = new Set();
    setConn('connecting…', false);

    s.onconnect = () => {
        const reconnect = state.everConnected;
        state.everConnected = true;
        state.retry = 0;
        setConn('connected', true);
        s.subscribe('/user/queue/messages', onMessage);
        s.subscribe('/user/queue/receipts', onReceipt);
        s.subscribe('/user/queue/typing', onTyping);
        s.subscribe('/user/queue/events', () => {
            loadConversations().catch(report);
        });
        s.subscribe('/user/queue/errors', onError);
        watchPresence();
        if (reconnect) {
            // gaps are filled from history; the list is fresh again
            loadConversations().catch(report);
            for (const c of state.convs.values()) {
                if (c.loaded) {
                    fillGap(c).catch(report);
                }
            }
        }
    };
    s.onerror = (frame) => {
        const msg = frame.headers.message || 'error';
        if (msg === 'unauthorized') {
            s.onclose = null;
            signOut('The server did not accept the token: sign in again.');
            return;
        }
        toast('server: ' + msg);
    };
    s.onclose = () => {
        state.stomp = null;
        setConn('offline, reconnecting…', false);
        const wait = Math.min(10000, 500 * 2 ** state.retry++);
        setTimeout(connect, wait);
    };
    s.connect();
}

function watchPresence() {
    const s = state.stomp;
    if (!s || !s.connected) {
        return;
    }
    for (const c of state.convs.values()) {
        for (const u of others(c)) {
            if (!state.presenceSubs.has(u)) {
                state.presenceSubs.add(u);
                s.subscribe('/topic/presence.' + u, onPresence);
            }
        }
    }
}

function onMessage(frame) {
    const m = JSON.parse(frame.body);
    let c = state.convs.get(m.conversationId);
    if (!c) {
        c = conv({ conversationId: m.conversationId });
        loadConversations().catch(report);
    }
    const gap = c.loaded && m.seq > c.maxSeq + 1;
    addMessage(c, m);
    c.typing.delete(m.senderId);
    touch(c);
    if (gap) {
        fillGap(c).catch(report);
    }
    changed(c);
    markRead(c);
}

function onReceipt(frame) {
    const r = JSON.parse(frame.body);
    const c = state.convs.get(r.conversationId);
    if (!c || r.userId === state.me) {
        return;
    }
    const mark = c.marks.get(r.userId) || { delivered: 0, read: 0 };
    if (r.type === 'read') {
        mark.read = Math.max(mark.read, r.seq);
    }
    mark.delivered = Math.max(mark.delivered, r.seq);
    c.marks.set(r.userId, mark);
    changed(c);
}

function onTyping(frame) {
    const t = JSON.parse(frame.body);
    const c = state.convs.get(t.conversationId);
    if (!c || t.userId === state.me) {
        return;
    }
    c.typing.set(t.userId, Date.now());
    changed(c);
    setTimeout(() => changed(c), TYPING_SHOW_FOR + 50);
}

function onPresence(frame) {
    const p = JSON.parse(frame.body);
    state.presence.set(p.userId, { online: !!p.online, lastSeen: p.lastSeen });
    renderList();
    if (state.open) {
        renderHead(state.convs.get(state.open));
    }
}

function onError(frame) {
    const e = JSON.parse(frame.body);
    for (const c of state.convs.values()) {
        const p = e.clientMsgId && c.pending.get(e.clientMsgId);
        if (p) {
            p.failed = true;
            changed(c);
        }
    }
    toast(e.message || e.code);
}

function send(c, content) {
    const clientMsgId = 'k' + Date.now().toString(36)
        + Math.random().toString(36).slice(2, 8);
    c.pending.set(clientMsgId, {
        clientMsgId, content, senderId: state.me, pending: true,
        createdAt: new Date().toISOString(),
    });
    const ok = state.stomp && state.stomp.send('/app/chat.send',
        { conversationId: c.id, content, clientMsgId });
    if (!ok) {
        c.pending.get(clientMsgId).failed = true;
    }
    state.lastTypingSent = 0;
    changed(c);
}

function typing(c) {
    const now = Date.now();
    if (state.stomp && now - state.lastTypingSent > TYPING_SEND_EVERY) {
        state.lastTypingSent = now;
        state.stomp.send('/app/chat.typing', { conversationId: c.id });
    }
}

// read up to the newest seq while the conversation is open and visible
function markRead(c) {
    if (state.open !== c.id || document.visibilityState !== 'visible'
        || !state.stomp || !state.stomp.connected || !c.maxSeq) {
        return;
    }
    if (c.sentRead >= c.maxSeq && c.lastReadSeq >= c.maxSeq) {
        return;
    }
    c.sentRead = c.maxSeq;
    state.stomp.send('/app/chat.read',
                     { conversationId: c.id, seq: c.maxSeq });
    c.lastReadSeq = Math.max(c.lastReadSeq, c.maxSeq);
    c.unread = Math.max(0, c.lastSeq - c.lastReadSeq);
    renderList();
}

/* -------------------------------------------------------------- rendering */

function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) {
        e.className = cls;
    }
    if (text !== undefined) {
        e.textContent = text;
    }
    return e;
}

function hhmm(iso) {
    const d = iso ? new Date(iso) : null;
    return d && !isNaN(d) ? d.toLocaleTimeString([], { hour: '2-digit',
                                                       minute: '2-digit' })
                          : '';
}

function lastSeen(iso) {
    const d = iso ? new Date(iso) : null;
    if (!d || isNaN(d)) {
        return 'offline';
    }
    const today = new Date().toDateString() === d.toDateString();
    return 'last seen ' + (today ? 'at ' + hhmm(iso)
                                 : d.toLocaleDateString() + ' ' + hhmm(iso));
}

function peerPresence(c) {
    if (c.type !== 'direct') {
        return null;
    }
    return state.presence.get(others(c)[0]) || null;
}

function changed(c) {
    renderList();
    if (state.open === c.id) {
        renderChat();
    }
}

function renderList() {
    const ul = $('conversations');
    ul.replaceChildren();
    for (const id of state.order) {
        const c = state.convs.get(id);
        const li = el('li', 'conv' + (id === state.open ? ' active' : ''));
        li.dataset.id = id;
        const p = peerPresence(c);
        const dot = el('span', 'dot' + (p && p.online ? ' online' : ''));
        dot.dataset.online = p && p.online ? '1' : '0';
        if (c.type !== 'direct') {
            dot.classList.add('group');
        }
        const body = el('div', 'conv-body');
        body.append(el('div', 'conv-title', title(c)));
        const lm = c.lastMessage;
        body.append(el('div', 'conv-last', lm
            ? (lm.senderId === state.me ? 'You: ' : lm.senderId + ': ')
              + lm.content
            : 'no messages yet'));
        li.append(dot, body);
        if (c.unread > 0 && id !== state.open) {
            li.append(el('span', 'badge', String(c.unread)));
        }
        li.onclick = () => openConversation(id);
        ul.append(li);
    }
}

function renderHead(c) {
    if (!c) {
        return;
    }
    $('chat-title').textContent = title(c);
    const p = peerPresence(c);
    const dot = $('peer-dot');
    dot.className = 'dot' + (p && p.online ? ' online' : '')
        + (c.type !== 'direct' ? ' group' : '');
    dot.dataset.online = p && p.online ? '1' : '0';
    $('chat-sub').textContent = c.type === 'direct'
        ? (p ? (p.online ? 'online' : lastSeen(p.lastSeen)) : '')
        : (c.members || []).join(', ');
}

// sent < delivered < read: history's status and the live watermarks
function tick(c, m) {
    const rank = { sent: 0, delivered: 1, read: 2 };
    let r = rank[m.status] || 0;
    const peers = others(c);
    if (peers.length) {
        const marks = peers.map((u) => c.marks.get(u)
                                       || { delivered: 0, read: 0 });
        if (marks.every((k) => k.read >= m.seq)) {
            r = 2;
        } else if (marks.every((k) => k.delivered >= m.seq)) {
            r = Math.max(r, 1);
        }
    }
    return ['sent', 'delivered', 'read'][r];
}

function renderMessages(c) {
    const list = $('list');
    list.replaceChildren();
    const msgs = Array.from(c.msgs.values()).sort((a, b) => a.seq - b.seq);
    let prevDay = '';
    for (const m of msgs.concat(Array.from(c.pending.values()))) {
        const day = m.createdAt ? new Date(m.createdAt).toDateString() : '';
        if (day && day !== prevDay) {
            list.append(el('li', 'day', new Date(m.createdAt)
                                            .toLocaleDateString()));
            prevDay = day;
        }
        const mine = m.senderId === state.me;
        const li = el('li', 'msg' + (mine ? ' mine' : '')
                      + (m.pending ? ' pending' : '')
                      + (m.failed ? ' failed' : ''));
        if (m.seq) {
            li.dataset.seq = m.seq;
        }
        if (m.clientMsgId) {
            li.dataset.clientMsgId = m.clientMsgId;
        }
        if (!mine && c.type !== 'direct') {
            li.append(el('div', 'from', m.senderId));
        }
        li.append(el('div', 'text', m.content));
        const meta = el('div', 'meta', hhmm(m.createdAt));
        if (mine) {
            const t = m.failed ? 'failed' : m.pending ? 'pending' : tick(c, m);
            const s = el('span', 'tick ' + t, {
                pending: '🕓', failed: '!', sent: '✓', delivered: '✓✓',
                read: '✓✓',
            }[t]);
            s.dataset.status = t;
            s.title = t;
            meta.append(' ', s);
        }
        li.append(meta);
        list.append(li);
    }
}

function renderChat() {
    const c = state.convs.get(state.open);
    $('empty').hidden = !!c;
    $('chat-head').hidden = !c;
    $('messages').hidden = !c;
    $('composer').hidden = !c;
    if (!c) {
        return;
    }
    renderHead(c);
    const box = $('messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
    renderMessages(c);
    if (atBottom || c.scrollDown) {
        box.scrollTop = box.scrollHeight;
        c.scrollDown = false;
    }
    if (c.hasMore && box.scrollHeight <= box.clientHeight) {
        loadEarlier(c).catch(report);      // nothing to scroll yet
    }
    const now = Date.now();
    const who = Array.from(c.typing).filter(([, at]) =>
        now - at < TYPING_SHOW_FOR).map(([u]) => u);
    $('typing').textContent = who.length
        ? who.join(', ') + (who.length > 1 ? ' are' : ' is') + ' typing…'
        : '';
}

async function openConversation(id) {
    state.open = id;
    history.replaceState(null, '', '#c=' + encodeURIComponent(id));
    const c = state.convs.get(id);
    c.scrollDown = true;
    renderList();
    renderChat();
    $('text').focus();
    if (!c.loaded) {
        await loadLatest(c).catch(report);
        c.scrollDown = true;
        renderChat();
    }
    markRead(c);
}

function setConn(text, ok) {
    $('conn').textContent = text;
    $('conn').classList.toggle('ok', ok);
    $('me-dot').classList.toggle('online', ok);
}

let toastTimer = 0;

function toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
}

function report(e) {
    if (e && e.message !== 'unauthorized') {
        toast(e.message || String(e));
    }
}

/* ------------------------------------------------------------------ start */

function start() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = state.myName;
    $('signout').onclick = () => signOut();
    $('new-form').onsubmit = (ev) => {
        ev.preventDefault();
        const members = $('new-members').value.split(/[\s,]+/)
            .filter((u) => u && u !== state.me);
        const name = $('new-name').value.trim();
        if (!members.length) {
            return;
        }
        createConversation(members, name).then(() => {
            $('new-members').value = '';
            $('new-name').value = '';
        }).catch(report);
    };
    $('composer').onsubmit = (ev) => {
        ev.preventDefault();
        const text = $('text').value;
        const c = state.convs.get(state.open);
        if (c && text.trim()) {
            c.scrollDown = true;
            send(c, text);
            $('text').value = '';
        }
    };
    $('text').oninput = () => {
        const c = state.convs.get(state.open);
        if (c && $('text').value) {
            typing(c);
        }
    };
    $('messages').onscroll = () => {
        const c = state.convs.get(state.open);
        if (c && $('messages').scrollTop < 40) {
            loadEarlier(c).catch(report);
        }
    };
    document.addEventListener('visibilitychange', () => {
        const c = state.convs.get(state.open);
        if (c) {
            markRead(c);
        }
    });
    connect();
    loadConversations().then(() => {
        const m = /^#c=(.+)$/.exec(location.hash);
        const id = m && decodeURIComponent(m[1]);
        if (id && state.convs.has(id)) {
            openConversation(id);
        }
    }).catch(report);
}

function main() {
    // a token in the address (#token=...) is taken and removed from it
    const m = /^#token=([^&]+)/.exec(location.hash);
    if (m) {
        history.replaceState(null, '', location.pathname);
        const err = useToken(decodeURIComponent(m[1]));
        if (!err) {
            return;
        }
        sessionStorage.setItem('chat.signin-error', err);
    }
    const saved = sessionStorage.getItem('chat.token');
    if (saved && !useToken(saved)) {
        return;
    }
    sessionStorage.removeItem('chat.token');
    showSignIn();
}

main();
