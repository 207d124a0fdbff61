// app.js: the ngx_chat web client: sign in, conversations, live messages,
// typing, presence, receipts, history, an outbox of messages the server has
// not confirmed yet (PROTOCOL.md is the contract).

import { StompClient } from './stomp.js';

const API = '/chat/api';
const WS_PATH = '/ws/chat';
const PAGE = 50;                    // messages per history request
const TYPING_SEND_EVERY = 2000;     // ms between our typing events
const TYPING_SHOW_FOR = 4000;       // ms a typing event is shown
const CONFIRM_TIMEOUT = 15000;      // ms a SEND may wait for its RECEIPT
const GROUP_GAP = 5 * 60000;        // ms between bubbles shown as one group
const TITLE = 'ngx_chat';

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
    maxContent: 0,                  // CONNECTED's max-content-size (bytes)
    names: new Map(),               // userId -> display name
    nameAsked: new Set(),           // userIds whose profile was asked
    receipts: new Map(),            // receipt id -> [conversation, entry]
    replyTo: 0,                     // the seq the composer answers
    editing: 0,                     // the seq the composer edits
    images: new Map(),              // attachment url -> object URL
};

const REACTION = '\u{1F44D}';       // the one reaction the page offers

const utf8 = new TextEncoder();

function connected() {
    return !!(state.stomp && state.stomp.connected);
}

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

// "the body is too large" -> "The body is too large."
function sentence(s) {
    s = String(s || '').trim();
    if (!s) {
        return '';
    }
    s = s[0].toUpperCase() + s.slice(1);
    return /[.!?…]$/.test(s) ? s : s + '.';
}

// an API error (the JSON shape of PROTOCOL section 7) as a sentence
function apiError(status, data) {
    const e = data && data.error ? data.error : {};
    switch (e.code) {
    case 'unavailable':
        return 'The server is busy or partly down: try again in a moment.';
    case 'rate_limited':
        return 'Too many requests: wait a moment and try again.';
    case 'forbidden':
        return 'You are not a member of that conversation.';
    case 'internal':
        return 'The server ran into a problem: try again in a moment.';
    }
    if (e.message) {
        return sentence(e.message);
    }
    return status >= 500
        ? 'The server ran into a problem (HTTP ' + status + '): try again '
          + 'in a moment.'
        : 'The server refused the request (HTTP ' + status + ').';
}

async function api(method, path, body) {
    let res;
    try {
        res = await fetch(API + path, {
            method,
            headers: Object.assign({ Authorization: 'Bearer ' + state.token },
                body ? { 'Content-Type': 'application/json' } : {}),
            body: body ? JSON.stringify(body) : undefined,
        });
    } catch (e) {
        // fetch's own TypeError ("Failed to fetch") says nothing useful
        throw new Error('The server cannot be reached: check the network; '
                        + 'the page keeps trying.');
    }
    if (res.status === 401) {
        signOut('The server did not accept the token: sign in again.');
        throw new Error('unauthorized');
    }
    const data = res.status === 204 ? null
                                    : await res.json().catch(() => null);
    if (!res.ok) {
        throw new Error(apiError(res.status, data));
    }
    return data;
}

/* ----------------------------------------------------------------- names */

function nameOf(u) {
    if (u === state.me) {
        return state.myName || u;
    }
    return state.names.get(u) || u;
}

// asks the profiles of users not known yet; renders again when they come
function askNames(users) {
    const ask = users.filter((u) => u !== state.me && !state.nameAsked.has(u));
    if (!ask.length) {
        return;
    }
    ask.forEach((u) => state.nameAsked.add(u));
    Promise.all(ask.map((u) => api('GET', '/users/' + encodeURIComponent(u))
        .then((p) => {
            if (p && p.displayName) {
                state.names.set(u, p.displayName);
            }
        }, () => {}))).then(() => {
        renderList();
        if (state.open) {
            renderChat();
        }
    });
}

async function rename() {
    const name = prompt('Your name as others see it:', state.myName || '');
    if (name === null || !name.trim()) {
        return;
    }
    const p = await api('PUT', '/users/me', { displayName: name.trim() });
    state.myName = (p && p.displayName) || name.trim();
    $('me-name').textContent = state.myName;
}

/* --------------------------------------------------------- conversations */

function conv(c) {
    let x = state.convs.get(c.conversationId);
    if (!x) {
        x = {
            id: c.conversationId, msgs: new Map(), outbox: new Map(),
            byCmid: new Map(), marks: new Map(), typing: new Map(),
            loaded: false, hasMore: false, loadingMore: false, maxSeq: 0,
            minSeq: 0, lastSeq: 0, lastReadSeq: 0, unread: 0, counted: 0,
            lastMessage: null,
        };
        state.convs.set(c.conversationId, x);
    }
    for (const k of ['type', 'name', 'members', 'request', 'pending',
                     'invitedBy']) {
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
        // the server's count (others' messages only) up to its lastSeq;
        // live messages above it are counted as they come
        x.unread = x.lastReadSeq >= x.lastSeq ? 0 : c.unread;
        x.counted = Math.max(x.counted, x.lastSeq);
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
        return nameOf(others(c)[0] || state.me);
    }
    return c.name || others(c).map(nameOf).join(', ') || 'group';
}

async function loadConversations() {
    const data = await api('GET', '/conversations');
    state.order = [];
    for (const c of data.conversations) {
        state.order.push(conv(c).id);
        askNames(c.members || []);
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

// a change (PROTOCOL.md section 10) applied to its message, if we hold it
// and do not hold a state newer than the change already
function applyChange(c, ev) {
    const m = c.msgs.get(ev.target);
    if (!m || (m.asOf || 0) >= ev.seq || m.deleted) {
        return;
    }
    m.asOf = ev.seq;
    if (ev.type === 'message.edited') {
        m.content = ev.content;
        m.editedAt = ev.createdAt;
    } else if (ev.type === 'message.deleted') {
        m.deleted = true;
        m.content = '';
        m.metadata = {};
        delete m.reactions;
        delete m.editedAt;
    } else if (ev.type === 'reaction.added'
               || ev.type === 'reaction.removed') {
        const r = m.reactions || {};
        const who = (r[ev.emoji] || []).filter((u) => u !== ev.senderId);
        if (ev.type === 'reaction.added') {
            who.push(ev.senderId);
        }
        if (who.length) {
            r[ev.emoji] = who;
        } else {
            delete r[ev.emoji];
        }
        m.reactions = r;
    }
}

const isChange = (m) => m.type && m.type !== 'message';

// asOf: a message from history is current as of that answer (its changes
// up to that seq are in it); a live one as of its own seq
function addMessage(c, m, asOf) {
    m.asOf = Math.max(asOf || 0, m.seq);
    if (isChange(m)) {
        applyChange(c, m);
    }
    const old = c.msgs.get(m.seq);
    if (old && old.status && !m.status) {
        m.status = old.status;
    }
    c.msgs.set(m.seq, m);
    if (m.clientMsgId && m.senderId === state.me) {
        c.byCmid.set(m.clientMsgId, m.seq);
    }
    c.minSeq = c.minSeq ? Math.min(c.minSeq, m.seq) : m.seq;
    c.maxSeq = Math.max(c.maxSeq, m.seq);
    if (m.seq > c.lastSeq) {
        c.lastSeq = m.seq;
    }
    if (!isChange(m) && (!c.lastMessage || m.seq >= c.lastMessage.seq)) {
        c.lastMessage = m;
    }
    // a user's own messages are never unread, from any of its devices
    if (m.seq > c.counted) {
        c.counted = m.seq;
        if (!isChange(m) && m.senderId !== state.me
            && m.seq > c.lastReadSeq) {
            c.unread++;
        }
    }
}

// every member's watermarks from a history answer
function addReceipts(c, list) {
    for (const r of list || []) {
        if (r.userId === state.me) {
            continue;
        }
        const mark = c.marks.get(r.userId) || { delivered: 0, read: 0 };
        mark.delivered = Math.max(mark.delivered, r.delivered || 0,
                                  r.read || 0);
        mark.read = Math.max(mark.read, r.read || 0);
        c.marks.set(r.userId, mark);
    }
}

// a history page: its messages are current as of its newest seq at least
function addPage(c, list) {
    const asOf = list.reduce((a, m) => Math.max(a, m.seq), 0);
    list.forEach((m) => addMessage(c, m, isChange(m) ? 0 : asOf));
}

async function loadLatest(c) {
    const data = await api('GET', '/conversations/' + encodeURIComponent(c.id)
                           + '/messages?limit=' + PAGE);
    addPage(c, data.messages);
    addReceipts(c, data.receipts);
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
        addPage(c, data.messages);
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
                addPage(c, data.messages);
                addReceipts(c, data.receipts);
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

    s.onconnect = (frame) => {
        const reconnect = state.everConnected;
        state.everConnected = true;
        state.retry = 0;
        state.maxContent = +frame.headers['max-content-size'] || 0;
        setConn('connected', true);
        s.onreceipt = onStompReceipt;
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
        // the outbox goes out again, oldest first, with the same ids
        for (const c of state.convs.values()) {
            for (const e of c.outbox.values()) {
                if (e.state === 'waiting' || (e.state === 'failed'
                                              && e.retryable)) {
                    transmit(c, e);
                }
            }
        }
        renderList();
        if (state.open) {
            renderChat();
        }
    };
    s.onerror = (frame) => {
        const msg = frame.headers.message || 'error';
        if (msg === 'unauthorized') {
            s.onclose = null;
            signOut('The server did not accept the token: sign in again.');
            return;
        }
        toast('The server closed the connection: ' + sentence(msg)
              + ' Reconnecting…');
    };
    s.onclose = (ev) => {
        state.stomp = null;
        setConn('offline, reconnecting…', false);
        // what the server has not confirmed goes out again once back
        for (const c of state.convs.values()) {
            for (const e of c.outbox.values()) {
                if (e.state === 'sending') {
                    fail(c, e, 'The connection was lost before the server '
                         + 'confirmed it: it is sent again when the '
                         + 'connection is back.', true, 'waiting');
                }
            }
        }
        renderList();
        if (state.open) {
            renderChat();
        }
        // a drained node (close 1001) is left at once, within a second so
        // that its clients do not all land on the others together; else
        // 0.5 s doubling to 10 s, each wait 50% to 150% of it (jitter)
        const wait = ev && ev.code === 1001 && state.retry === 0
            ? Math.random() * 1000
            : Math.min(10000, 500 * 2 ** state.retry)
              * (0.5 + Math.random());
        state.retry++;
        setTimeout(connect, wait);
    };
    s.connect();
}

// the server's rule (PROTOCOL.md, "Requests and blocking"): u has accepted,
// and so have we, or u invited us; asking for more would close the session
function watchable(c, u) {
    if ((c.pending || []).includes(u)) {
        return false;
    }
    return !c.request || u === c.invitedBy;
}

function watchPresence() {
    const s = state.stomp;
    if (!s || !s.connected) {
        return;
    }
    for (const c of state.convs.values()) {
        for (const u of others(c)) {
            if (watchable(c, u) && !state.presenceSubs.has(u)) {
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
    if ((c.pending || []).includes(m.senderId) || (c.request
                                                   && m.senderId === state.me)) {
        // a message accepts its sender's request once it is stored (no
        // event says so)
        setTimeout(() => loadConversations().catch(report), 2000);
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

// why a message was refused, as the bubble says it; and whether sending it
// again later may work
function refusal(e) {
    switch (e.code) {
    case 'unavailable':
        return ['The server could not store it just now (a part of it is '
                + 'down): it is tried again shortly.', true];
    case 'rate_limited':
        return ['Sent too fast: it is tried again shortly.', true];
    case 'too_large':
        return ['Too long for the server: shorten it.', false];
    case 'not_member':
        return ['You are no longer a member of this conversation.', false];
    default:
        return ['The server refused it: ' + sentence(e.message || e.code),
                false];
    }
}

function onError(frame) {
    const e = JSON.parse(frame.body);
    for (const c of state.convs.values()) {
        const entry = e.clientMsgId && c.outbox.get(e.clientMsgId);
        if (entry) {
            const [why, retryable] = refusal(e);
            fail(c, entry, why, retryable);
            changed(c);
            return;
        }
    }
    toast(sentence(e.message || e.code));
}

// a RECEIPT: the message is stored for good, the outbox lets it go
function onStompReceipt(frame) {
    const id = frame.headers['receipt-id'];
    const r = state.receipts.get(id);
    if (!r) {
        return;
    }
    const [c, e] = r;
    state.receipts.delete(id);
    if (c.outbox.get(e.clientMsgId) === e && e.receipt === id) {
        clearTimeout(e.timer);
        c.outbox.delete(e.clientMsgId);
        saveOutbox();
        changed(c);
    }
}

// the entry failed (why, a sentence); a retryable one is sent again on its
// own: at the next connection, or after a growing pause while connected
function fail(c, e, why, retryable, st = 'failed') {
    clearTimeout(e.timer);
    state.receipts.delete(e.receipt);
    e.state = st;
    e.reason = why;
    e.retryable = retryable;
    if (retryable && st === 'failed') {
        const wait = Math.min(30000, 2000 * 2 ** Math.min(e.tries, 4));
        e.timer = setTimeout(() => {
            if (c.outbox.get(e.clientMsgId) === e && e.state === 'failed') {
                transmit(c, e);
                changed(c);
            }
        }, wait);
    }
}

// (re)sends an outbox entry with its clientMsgId and a new receipt id
function transmit(c, e) {
    clearTimeout(e.timer);
    state.receipts.delete(e.receipt);
    if (!c.byCmid.has(e.clientMsgId)) {
        e.afterSeq = c.maxSeq;          // shown after what is known now
    }
    if (!connected()) {
        e.state = 'waiting';
        e.reason = 'Not connected: it is sent when the connection is back.';
        e.retryable = true;
        return;
    }
    e.tries++;
    e.receipt = 'send-' + e.clientMsgId + '-' + e.tries;
    state.receipts.set(e.receipt, [c, e]);
    e.state = 'sending';
    e.reason = '';
    const body = { conversationId: c.id, content: e.content,
                   clientMsgId: e.clientMsgId };
    if (e.replyTo) {
        body.replyTo = e.replyTo;
    }
    if (e.metadata) {
        body.metadata = e.metadata;
    }
    state.stomp.send('/app/chat.send', body, { receipt: e.receipt });
    e.timer = setTimeout(() => {
        if (c.outbox.get(e.clientMsgId) === e && e.state === 'sending') {
            fail(c, e, 'The server did not confirm it in time: it is tried '
                 + 'again shortly.', true);
            changed(c);
        }
    }, CONFIRM_TIMEOUT);
}

function send(c, content, more) {
    const clientMsgId = 'k' + Date.now().toString(36)
        + Math.random().toString(36).slice(2, 8);
    const e = {
        ...(more || {}),
        clientMsgId, content, senderId: state.me, tries: 0,
        createdAt: new Date().toISOString(), state: 'sending', reason: '',
        retryable: true, afterSeq: c.maxSeq, receipt: null, timer: 0,
    };
    c.outbox.set(clientMsgId, e);
    saveOutbox();
    transmit(c, e);
    state.lastTypingSent = 0;
    changed(c);
}

// edit, delete, react (PROTOCOL.md section 10): the change comes back as an
// event on /user/queue/messages; a refusal arrives on the errors queue
function change(c, what, body) {
    if (!connected()) {
        toast('Not connected: try again when the connection is back.');
        return;
    }
    state.stomp.send('/app/chat.' + what,
                     { conversationId: c.id, ...body },
                     { receipt: 'change-' + what + '-' + Date.now() });
}

// uploads a file as an attachment, then sends a message that shows it
async function attach(c, file) {
    const res = await fetch(API + '/attachments?conversationId='
                            + encodeURIComponent(c.id), {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + state.token,
                   'Content-Type': file.type || 'application/octet-stream' },
        body: file,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
        throw apiError(res.status, data);
    }
    c.scrollDown = true;
    send(c, file.name || 'attachment', { metadata: { attachment: data } });
}

// an image attachment, fetched with our token (an <img> cannot send it)
function imageOf(a) {
    const img = el('img', 'attachment');
    img.alt = 'attachment';
    const have = state.images.get(a.url);
    if (have) {
        img.src = have;
        return img;
    }
    fetch(a.url, { headers: { Authorization: 'Bearer ' + state.token } })
        .then((r) => (r.ok ? r.blob() : Promise.reject(r.status)))
        .then((b) => {
            const u = URL.createObjectURL(b);
            state.images.set(a.url, u);
            img.src = u;
        })
        .catch(() => { img.alt = 'the image cannot be shown'; });
    return img;
}

async function search(q) {
    const out = $('search-results');
    out.replaceChildren();
    if (!q) {
        return;
    }
    const data = await api('GET', '/search?q=' + encodeURIComponent(q));
    if (!data.results.length) {
        out.append(el('li', 'none', 'Nothing found.'));
    }
    for (const m of data.results) {
        const li = el('li', 'result');
        const c = state.convs.get(m.conversationId);
        li.append(el('div', 'where', (c ? title(c) : m.conversationId)
                     + ' · ' + nameOf(m.senderId)));
        li.append(el('div', 'text', m.content));
        li.onclick = () => openConversation(m.conversationId);
        out.append(li);
    }
}

function composerMode() {
    const c = state.convs.get(state.open);
    const bar = $('compose-mode');
    const m = c && (state.editing || state.replyTo)
        && c.msgs.get(state.editing || state.replyTo);
    bar.hidden = !m;
    if (m) {
        $('compose-what').textContent = (state.editing ? 'Editing: '
                                         : 'Replying to ' + nameOf(m.senderId)
                                           + ': ') + m.content;
    }
}

function removeFromOutbox(c, e) {
    clearTimeout(e.timer);
    state.receipts.delete(e.receipt);
    c.outbox.delete(e.clientMsgId);
    saveOutbox();
    changed(c);
}

// the outbox outlives a reload of the tab (sessionStorage, per user)
function outboxKey() {
    return 'chat.outbox.' + state.me;
}

function saveOutbox() {
    const all = [];
    for (const c of state.convs.values()) {
        for (const e of c.outbox.values()) {
            all.push({ conversationId: c.id, clientMsgId: e.clientMsgId,
                       content: e.content, createdAt: e.createdAt });
        }
    }
    try {
        if (all.length) {
            sessionStorage.setItem(outboxKey(), JSON.stringify(all));
        } else {
            sessionStorage.removeItem(outboxKey());
        }
    } catch (err) {
        // storage full or off: the outbox lives as long as the page
    }
}

// once the conversations are known: what the last page left unconfirmed
function restoreOutbox() {
    let all;
    try {
        all = JSON.parse(sessionStorage.getItem(outboxKey()) || '[]');
    } catch (err) {
        all = [];
    }
    for (const x of all) {
        const c = state.convs.get(x.conversationId);
        if (!c || c.outbox.has(x.clientMsgId)) {
            continue;
        }
        const e = {
            clientMsgId: x.clientMsgId, content: x.content,
            senderId: state.me, tries: 0, createdAt: x.createdAt,
            state: 'waiting', reason: '', retryable: true,
            afterSeq: c.lastSeq, receipt: null, timer: 0,
        };
        c.outbox.set(e.clientMsgId, e);
        transmit(c, e);
    }
    saveOutbox();
}

// the server's limit, in UTF-8 bytes; a sentence when text is over it
function tooLong(text) {
    const n = utf8.encode(text).length;
    if (!state.maxContent || n <= state.maxContent) {
        return '';
    }
    return 'This message is too long to send: ' + n.toLocaleString()
        + ' bytes, the server accepts ' + state.maxContent.toLocaleString()
        + '. Shorten it or split it in two.';
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
    // reading a request would accept it: it is read once accepted
    if (state.open !== c.id || document.visibilityState !== 'visible'
        || !state.stomp || !state.stomp.connected || !c.maxSeq
        || c.request) {
        return;
    }
    if (c.sentRead >= c.maxSeq && c.lastReadSeq >= c.maxSeq) {
        return;
    }
    c.sentRead = c.maxSeq;
    state.stomp.send('/app/chat.read',
                     { conversationId: c.id, seq: c.maxSeq });
    c.lastReadSeq = Math.max(c.lastReadSeq, c.maxSeq);
    if (c.lastReadSeq >= c.lastSeq) {
        c.unread = 0;
    }
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

// text with its http(s) links clickable; anything else stays text (no
// "javascript:" or other scheme ever becomes a link)
const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;

function linkify(text) {
    const f = document.createDocumentFragment();
    let at = 0;
    for (const m of text.matchAll(LINK)) {
        let url = m[0].replace(/[.,;:!?)\]}]+$/, '');
        if (url.length < m[0].length && /\([^)]*$/.test(url)
            && m[0][url.length] === ')') {
            url += ')';                 // https://en.wikipedia.org/wiki/X_(y)
        }
        let href;
        try {
            href = new URL(url);
        } catch (e) {
            continue;
        }
        if (href.protocol !== 'http:' && href.protocol !== 'https:') {
            continue;
        }
        f.append(text.slice(at, m.index));
        const a = el('a', 'link', url);
        a.href = href.href;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        f.append(a);
        at = m.index + url.length;
    }
    f.append(text.slice(at));
    return f;
}

function hhmm(iso) {
    const d = iso ? new Date(iso) : null;
    return d && !isNaN(d) ? d.toLocaleTimeString([], { hour: '2-digit',
                                                       minute: '2-digit' })
                          : '';
}

// "Today", "Yesterday", or the date
function dayLabel(d) {
    const today = new Date();
    const yesterday = new Date(today);
    yesterday.setDate(today.getDate() - 1);
    if (d.toDateString() === today.toDateString()) {
        return 'Today';
    }
    if (d.toDateString() === yesterday.toDateString()) {
        return 'Yesterday';
    }
    return d.toLocaleDateString([], {
        weekday: 'short', day: 'numeric', month: 'short',
        year: d.getFullYear() === today.getFullYear() ? undefined : 'numeric',
    });
}

function lastSeen(iso) {
    const d = iso ? new Date(iso) : null;
    if (!d || isNaN(d)) {
        return 'offline';
    }
    const day = dayLabel(d);
    return 'last seen ' + (day === 'Today' ? 'at ' + hhmm(iso)
                           : day.toLowerCase() + ' at ' + hhmm(iso));
}

// what is known of the peer of a direct conversation; while disconnected
// nothing is (the last state may be stale)
function peerPresence(c) {
    if (c.type !== 'direct' || !connected()) {
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

function updateTitle() {
    let n = 0;
    for (const c of state.convs.values()) {
        n += c.unread > 0 ? c.unread : 0;
    }
    document.title = n ? '(' + n + ') ' + TITLE : TITLE;
}

// the list's line for the newest entry (the server's may be a change)
function lastText(m) {
    return {
        'message.edited': 'edited a message',
        'message.deleted': 'deleted a message',
        'reaction.added': 'reacted ' + (m.emoji || ''),
        'reaction.removed': 'took back a reaction',
    }[m.type] || (m.deleted ? 'deleted a message' : m.content);
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
            ? (lm.senderId === state.me ? 'You: ' : nameOf(lm.senderId)
                                                    + ': ')
              + lastText(lm)
            : 'no messages yet'));
        li.append(dot, body);
        if (c.unread > 0 && id !== state.open) {
            li.append(el('span', 'badge', String(c.unread)));
        }
        li.onclick = () => openConversation(id);
        ul.append(li);
    }
    updateTitle();
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
        ? (!connected() ? 'connecting…'
           : p ? (p.online ? 'online' : lastSeen(p.lastSeen)) : '')
        : (c.members || []).map(nameOf).join(', ');
}

// sent < delivered < read: the history's status and every other member's
// watermark; the tooltip says who has it
function tick(c, m) {
    const rank = { sent: 0, delivered: 1, read: 2 };
    let r = rank[m.status] || 0;
    const peers = others(c);
    const read = [];
    const got = [];
    const not = [];
    for (const u of peers) {
        const k = c.marks.get(u);
        if (k && k.read >= m.seq) {
            read.push(nameOf(u));
        } else if (k && k.delivered >= m.seq) {
            got.push(nameOf(u));
        } else {
            not.push(nameOf(u));
        }
    }
    if (peers.length && read.length === peers.length) {
        r = 2;
    } else if (peers.length && !not.length) {
        r = Math.max(r, 1);
    }
    const status = ['sent', 'delivered', 'read'][r];
    let tip;
    if (c.type === 'direct') {
        tip = { sent: 'Sent', delivered: 'Delivered', read: 'Read' }[status];
    } else {
        tip = [read.length ? 'Read by ' + read.join(', ') : '',
               got.length ? 'Delivered to ' + got.join(', ') : '',
               not.length && r < 1 ? 'Not delivered yet to ' + not.join(', ')
                                   : ''].filter(Boolean).join('\n')
              || { sent: 'Sent', delivered: 'Delivered to everyone',
                   read: 'Read by everyone' }[status];
        if (r === 2) {
            tip = 'Read by everyone\n' + tip;
        } else if (r === 1) {
            tip = 'Delivered to everyone\n' + tip;
        }
    }
    return [status, tip];
}

// the messages by seq; an outbox entry the server has not echoed yet sits
// after the messages known when it was (last) sent, never pinned below
// newer ones
function timeline(c) {
    const items = Array.from(c.msgs.values()).filter((m) => !isChange(m))
        .map((m) => [m.seq, 0, m]);
    for (const e of c.outbox.values()) {
        if (!c.byCmid.has(e.clientMsgId)) {
            items.push([e.afterSeq + 0.5, Date.parse(e.createdAt) || 0, e]);
        }
    }
    return items.sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((i) => i[2]);
}

function failBox(c, e) {
    const box = el('div', 'fail');
    box.append(el('span', 'why', e.reason));
    const retry = el('button', 'retry', 'Retry');
    retry.type = 'button';
    retry.onclick = () => {
        e.tries = 0;
        transmit(c, e);
        changed(c);
    };
    box.append(retry);
    if (!c.byCmid.has(e.clientMsgId)) {
        const del = el('button', 'delete', 'Delete');
        del.type = 'button';
        del.onclick = () => removeFromOutbox(c, e);
        box.append(del);
    }
    return box;
}

function renderMessages(c) {
    const list = $('list');
    list.replaceChildren();
    let prevDay = '';
    let prev = null;
    for (const m of timeline(c)) {
        const at = m.createdAt ? new Date(m.createdAt) : null;
        const day = at && !isNaN(at) ? at.toDateString() : prevDay;
        if (day && day !== prevDay) {
            list.append(el('li', 'day', dayLabel(at)));
            prevDay = day;
            prev = null;
        }
        const mine = m.senderId === state.me;
        const entry = m.seq ? c.outbox.get(m.clientMsgId) : m;
        const pending = entry && entry.state === 'sending' && !m.seq;
        const failed = entry && entry.state !== 'sending';
        const cont = prev && prev.senderId === m.senderId && at
            && at - new Date(prev.createdAt) < GROUP_GAP;
        const li = el('li', 'msg' + (mine ? ' mine' : '')
                      + (cont ? ' cont' : '')
                      + (pending ? ' pending' : '')
                      + (failed ? ' failed' : ''));
        if (m.seq) {
            li.dataset.seq = m.seq;
        }
        if (m.clientMsgId) {
            li.dataset.clientMsgId = m.clientMsgId;
        }
        li.dataset.sender = m.senderId;
        if (!mine && c.type !== 'direct' && !cont) {
            li.append(el('div', 'from', nameOf(m.senderId)));
        }
        if (m.replyTo) {
            const q = c.msgs.get(m.replyTo);
            li.append(el('div', 'quote', q ? (q.deleted ? 'deleted message'
                                                        : nameOf(q.senderId)
                                                          + ': ' + q.content)
                                           : 'an earlier message'));
        }
        const text = el('div', 'text');
        const a = m.metadata && m.metadata.attachment;
        if (m.deleted) {
            li.classList.add('deleted');
            text.append('This message was deleted.');
        } else {
            text.append(linkify(m.content));
            if (a && /^image\//.test(a.contentType || '') && a.url) {
                text.append(imageOf(a));
            }
        }
        li.append(text);
        const reactions = Object.entries(m.reactions || {});
        if (reactions.length) {
            const box = el('div', 'reactions');
            for (const [emoji, who] of reactions) {
                const r = el('span', 'reaction', emoji + ' ' + who.length);
                r.title = who.map(nameOf).join(', ');
                r.dataset.emoji = emoji;
                box.append(r);
            }
            li.append(box);
        }
        const meta = el('div', 'meta', hhmm(m.createdAt)
                        + (m.editedAt && !m.deleted ? ' · edited' : ''));
        if (mine) {
            let t;
            let tip;
            if (failed) {
                t = 'failed';
                tip = entry.reason;
            } else if (pending) {
                t = 'pending';
                tip = 'Sending…';
            } else {
                [t, tip] = tick(c, m);
            }
            const s = el('span', 'tick ' + t, {
                pending: '🕓', failed: '!', sent: '✓', delivered: '✓✓',
                read: '✓✓',
            }[t]);
            s.dataset.status = t;
            s.title = tip;
            meta.append(' ', s);
        }
        li.append(meta);
        if (m.seq && !m.deleted) {
            li.append(actions(c, m, mine));
        }
        if (failed) {
            li.append(failBox(c, entry));
        }
        list.append(li);
        prev = m;
    }
}

function actions(c, m, mine) {
    const box = el('div', 'actions');
    const button = (cls, text, label, fn) => {
        const b = el('button', cls, text);
        b.type = 'button';
        b.title = label;
        b.setAttribute('aria-label', label);
        b.onclick = fn;
        box.append(b);
    };
    button('reply', '↩', 'Reply', () => {
        state.replyTo = m.seq;
        state.editing = 0;
        composerMode();
        $('text').focus();
    });
    const mineToo = (m.reactions && m.reactions[REACTION] || [])
        .includes(state.me);
    button('react' + (mineToo ? ' on' : ''), REACTION,
           mineToo ? 'Take back your ' + REACTION : 'React with ' + REACTION,
           () => change(c, 'react', { seq: m.seq, emoji: REACTION,
                                      remove: mineToo }));
    if (mine) {
        button('edit', '✎', 'Edit', () => {
            state.editing = m.seq;
            state.replyTo = 0;
            $('text').value = m.content;
            composerMode();
            $('text').focus();
        });
        button('del', '🗑', 'Delete', () => change(c, 'delete',
                                                 { seq: m.seq }));
    }
    return box;
}

function renderChat() {
    const c = state.convs.get(state.open);
    $('app').classList.toggle('chat-open', !!c);
    $('empty').hidden = !!c;
    $('chat-head').hidden = !c;
    $('messages').hidden = !c;
    $('composer').hidden = !c;
    if (!c) {
        return;
    }
    renderHead(c);
    $('request').hidden = !c.request;
    $('request-text').textContent = c.request
        ? nameOf(c.invitedBy || others(c)[0] || '') + ' asks to chat with you.'
        : '';
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
        now - at < TYPING_SHOW_FOR).map(([u]) => nameOf(u));
    $('typing').textContent = who.length
        ? who.join(', ') + (who.length > 1 ? ' are' : ' is') + ' typing…'
        : '';
}

async function openConversation(id) {
    if (state.open !== id) {
        state.replyTo = 0;
        state.editing = 0;
    }
    state.open = id;
    history.replaceState(null, '', '#c=' + encodeURIComponent(id));
    const c = state.convs.get(id);
    c.scrollDown = true;
    renderList();
    renderChat();
    composerMode();
    $('text').focus();
    if (!c.loaded) {
        await loadLatest(c).catch(report);
        c.scrollDown = true;
        renderChat();
    }
    markRead(c);
}

// back to the list (the phone layout shows one of them at a time)
// a request: accept it (our presence shows then) or decline it (we leave)
async function answerRequest(how) {
    const id = state.open;
    if (!id) {
        return;
    }
    await api('POST', '/conversations/' + encodeURIComponent(id) + '/' + how);
    if (how === 'decline') {
        state.convs.delete(id);
        closeConversation();
    }
    await loadConversations();
    const c = state.convs.get(id);
    if (c) {
        markRead(c);
    }
}

function closeConversation() {
    state.open = null;
    history.replaceState(null, '', location.pathname);
    renderList();
    renderChat();
}

function setConn(text, ok) {
    $('conn').textContent = text;
    $('conn').classList.toggle('ok', ok);
    $('me-dot').classList.toggle('online', ok);
    renderList();
    if (state.open) {
        renderHead(state.convs.get(state.open));
    }
}

let toastTimer = 0;

function toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}

function report(e) {
    if (e && e.message !== 'unauthorized') {
        toast(e.message ? sentence(e.message) : 'Something went wrong.');
    }
}

// the composer: Enter sends, Shift+Enter is a new line; over the server's
// limit nothing is sent and it says why
function composerCheck() {
    const why = tooLong($('text').value);
    $('composer-error').textContent = why;
    $('composer-error').hidden = !why;
    $('send').disabled = !!why;
    const t = $('text');
    t.style.height = 'auto';
    t.style.height = Math.min(t.scrollHeight + 2, 160) + 'px';
    return why;
}

function submit() {
    const text = $('text').value;
    const c = state.convs.get(state.open);
    if (!c || !text.trim() || composerCheck()) {
        return;
    }
    if (state.editing) {
        change(c, 'edit', { seq: state.editing, content: text });
    } else {
        c.scrollDown = true;
        send(c, text, state.replyTo ? { replyTo: state.replyTo } : null);
    }
    state.editing = 0;
    state.replyTo = 0;
    composerMode();
    $('text').value = '';
    composerCheck();
}

/* ------------------------------------------------------------------ start */

function start() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('me-name').textContent = state.myName;
    $('me-name').onclick = () => rename().catch(report);
    $('signout').onclick = () => signOut();
    $('back').onclick = () => closeConversation();
    $('accept').onclick = () => answerRequest('accept').catch(report);
    $('decline').onclick = () => answerRequest('decline').catch(report);
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
    $('compose-cancel').onclick = () => {
        if (state.editing) {
            $('text').value = '';
        }
        state.editing = 0;
        state.replyTo = 0;
        composerMode();
    };
    $('attach').onclick = () => $('file').click();
    $('file').onchange = () => {
        const c = state.convs.get(state.open);
        const f = $('file').files[0];
        $('file').value = '';
        if (c && f) {
            attach(c, f).catch(report);
        }
    };
    $('search-form').onsubmit = (ev) => {
        ev.preventDefault();
        search($('search-q').value.trim()).catch(report);
    };
    $('composer').onsubmit = (ev) => {
        ev.preventDefault();
        submit();
    };
    $('text').onkeydown = (ev) => {
        if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            submit();
        }
    };
    $('text').oninput = () => {
        composerCheck();
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
        restoreOutbox();
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
