// lib.mjs: what the browser tests share: tokens, numbered checks that stop
// at the first failure (with screenshots of every page), waiting helpers.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const base = process.env.CHAT_URL;
export const secret = process.env.TEST_NGINX_JWT_SECRET || 'secret';
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
export const shots = path.resolve(process.env.SCREENSHOT_DIR
                                  || path.join(here, '..', 'servroot',
                                               'browser'));
export const suffix = process.env.CHAT_USER_SUFFIX || '';
export const TIMEOUT = +(process.env.CHECK_TIMEOUT_MS || 8000);

export function token(sub, name, ttl = 3600) {
    const b64url = (s) => Buffer.from(s).toString('base64url');
    const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
    const body = b64url(JSON.stringify({
        sub, name, exp: Math.floor(Date.now() / 1000) + ttl,
    }));
    const sig = crypto.createHmac('sha256', secret)
        .update(head + '.' + body).digest('base64url');
    return head + '.' + body + '.' + sig;
}

let n = 0;
let browser = null;
export const pages = [];            // [name, page]: screenshots on failure

export async function launch() {
    if (!base) {
        console.error('error: set CHAT_URL (e.g. http://127.0.0.1:8080/)');
        process.exit(2);
    }
    let chromium;
    try {
        ({ chromium } = await import('playwright-core'));
    } catch (e) {
        console.error('error: playwright-core is not installed: run "make '
                      + 'browser-deps" (npm ci in t/browser)');
        process.exit(2);
    }
    fs.mkdirSync(shots, { recursive: true });
    try {
        browser = await chromium.launch({
            executablePath: chromiumPath,
            headless: true,
            args: ['--headless', '--no-sandbox', '--disable-gpu',
                   '--disable-quic', '--no-first-run',
                   '--disable-background-networking',
                   '--disable-component-update', '--disable-sync'],
        });
    } catch (e) {
        console.error('error: cannot start ' + chromiumPath + ': '
                      + e.message);
        process.exit(2);
    }
    return browser;
}

async function fail(what, err) {
    console.log('not ok ' + (n + 1) + ' - ' + what);
    console.log('# FAILED: ' + what);
    if (err) {
        console.log('# ' + String(err.message || err).split('\n')
                    .slice(0, 6).join('\n# '));
    }
    for (const [name, page] of pages) {
        const file = path.join(shots, 'failed-' + name + '.png');
        try {
            await page.screenshot({ path: file });
            console.log('# screenshot: ' + file);
        } catch (e) {
            // the page is gone
        }
    }
    if (browser) {
        await browser.close().catch(() => {});
    }
    process.exit(1);
}

// one check: fn resolves (or throws/times out: the check fails)
export async function check(what, fn) {
    try {
        await fn();
    } catch (e) {
        await fail(what, e);
    }
    n++;
    console.log('ok ' + n + ' - ' + what);
}

export async function done() {
    await browser.close();
    console.log('1..' + n);
    console.log('# all browser checks passed');
}

export async function shot(page, name) {
    const file = path.join(shots, name + '.png');
    await page.screenshot({ path: file });
    console.log('# screenshot: ' + file);
}

export async function signIn(ctx, user, name, label) {
    const page = await ctx.newPage();
    const who = label || user;
    page.on('pageerror', (e) => console.log('# ' + who + ' page error: '
                                            + e.message));
    page.on('console', (m) => {
        if (m.type() === 'error') {
            console.log('# ' + who + ' console: ' + m.text());
        }
    });
    pages.push([who, page]);
    await page.goto(new URL('/#token=' + token(user, name), base).href);
    return page;
}

export const hasText = (page, sel, text) =>
    page.locator(sel, { hasText: text }).first()
        .waitFor({ state: 'visible', timeout: TIMEOUT });

export const attrIs = (page, sel, attr, value) =>
    page.waitForFunction(([s, a, v]) => {
        const e = document.querySelector(s);
        return e && e.getAttribute(a) === v;
    }, [sel, attr, value], { timeout: TIMEOUT });

export const until = (page, fn, arg) =>
    page.waitForFunction(fn, arg, { timeout: TIMEOUT });

// the tick of my message with that text: its status and tooltip
export const tickOf = (page, text) => page.evaluate((t) => {
    const m = Array.from(document.querySelectorAll('#list .msg.mine'))
        .find((e) => e.querySelector('.text').textContent === t);
    const k = m && m.querySelector('.tick');
    return k ? { status: k.dataset.status, title: k.title } : null;
}, text);

export const tickIs = (page, text, status) =>
    page.waitForFunction(([t, st]) => {
        const m = Array.from(document.querySelectorAll('#list .msg.mine'))
            .find((e) => e.querySelector('.text').textContent === t);
        const k = m && m.querySelector('.tick');
        return k && k.dataset.status === st;
    }, [text, status], { timeout: TIMEOUT });

export function expect(cond, what) {
    if (!cond) {
        throw new Error(what);
    }
}
