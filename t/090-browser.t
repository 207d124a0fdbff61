# The web client (web/) served by nginx next to the gateway, driven in
# Debian's chromium by playwright-core: t/browser/chat.spec.mjs.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';

# skipped only when the browser or node is missing (make deps installs them)
my $node = `command -v node 2>/dev/null`;
chomp $node;
if (!$node) {
    Test::More::plan(skip_all => 'no node (make browser-deps)');
} elsif (!-x $chromium) {
    Test::More::plan(skip_all =>
                     "no chromium at $chromium (make browser-deps)");
}

$ENV{TEST_NGINX_WEB_ROOT} = "$root/web";

# the page and its files, alone ($TEST_NGINX_WEB_CONFIG) and with the
# gateway's location blocks ($TEST_NGINX_CHAT_CONFIG)
$ENV{TEST_NGINX_WEB_CONFIG} = <<"_EOC_";
    location / {
        root $ENV{TEST_NGINX_WEB_ROOT};
        index index.html;
        types {
            text/html html;
            text/javascript js mjs;
            text/css css;
        }
        charset utf-8;
        charset_types text/javascript text/css;
        log_not_found off;
    }
_EOC_
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(more => $ENV{TEST_NGINX_WEB_CONFIG});

$ENV{TEST_NGINX_BROWSER_DIR} = "$root/t/browser";

plan_from_blocks();

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;

# runs a browser test (chat.spec.mjs unless named); its output, and its
# exit code
sub run_browser {
    my ($spec) = @_;
    my $dir = $ENV{TEST_NGINX_BROWSER_DIR};
    local $ENV{CHAT_URL} = 'http://127.0.0.1:' . server_port() . '/';
    local $ENV{SCREENSHOT_DIR} = $ENV{SCREENSHOT_DIR}
                                 || servroot() . '/../browser';
    my $out = `node "$dir/@{[ $spec // 'chat.spec.mjs' ]}" 2>&1`;
    return ($out, $? >> 8);
}

package main;

run_tests();

__DATA__

=== TEST 1: the page, its scripts and styles are served with their types
--- config
$TEST_NGINX_WEB_CONFIG
--- request
GET /app.js
--- response_headers
Content-Type: text/javascript; charset=utf-8
--- response_body_like: import \{ StompClient \} from './stomp.js'



=== TEST 2: two users chat in chromium: typing, ticks, presence, history
--- perl_timeout: 150
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my ($out, $rc) = run_browser();
diag($out) if $rc != 0 || $ENV{TEST_VERBOSE};
is($rc, 0, 'the browser test exits 0');
like($out, qr/^# all browser checks passed$/m, 'every browser check passed');
--- no_error_log
[error]



=== TEST 3: the web client at desktop and phone sizes: unread, names, links, limits, outbox
--- perl_timeout: 240
--- tests: 2
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
    location / {
        root $TEST_NGINX_WEB_ROOT;
        index index.html;
        types {
            text/html html;
            text/javascript js mjs;
            text/css css;
        }
        charset utf-8;
        charset_types text/javascript text/css;
        log_not_found off;
    }
--- perl
my ($out, $rc) = run_browser('client.spec.mjs');
diag($out) if $rc != 0 || $ENV{TEST_VERBOSE};
is($rc, 0, 'the browser test exits 0');
like($out, qr/^# all browser checks passed$/m, 'every browser check passed');
--- no_error_log
[error]
