# 133-browser-lifecycle.t: issue 20 in the web client (web/), in Debian's
# chromium driven by playwright-core: t/browser/lifecycle.spec.mjs (two
# users reply, edit, delete, react, send an image and search; a third who
# was offline sees the same state). A persistence worker runs: search reads
# PostgreSQL.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';

my $node = `command -v node 2>/dev/null`;
chomp $node;
if (!$node) {
    Test::More::plan(skip_all => 'no node (make browser-deps)');
} elsif (!-x $chromium) {
    Test::More::plan(skip_all =>
                     "no chromium at $chromium (make browser-deps)");
}

my $secret = $ENV{TEST_NGINX_JWT_SECRET} // '';
my $store = "$ENV{TEST_NGINX_SERVROOT}/attach";

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(more => <<"_EOC_");
    location /chat/api/attachments {
        chat_attachments $store /chat/files/;
        chat_jwt_secret $secret;
        client_max_body_size 1m;
        client_body_temp_path $store;
    }
    location /chat/files/ {
        internal;
        alias $store/;
    }
    location / {
        root $root/web;
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

plan_from_blocks();

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);

sub run_browser {
    my ($spec) = @_;
    local $ENV{CHAT_URL} = 'http://127.0.0.1:' . server_port() . '/';
    local $ENV{SCREENSHOT_DIR} = $ENV{SCREENSHOT_DIR}
                                 || servroot() . '/../browser';
    my $out = `node "$root/t/browser/$spec" 2>&1`;
    return ($out, $? >> 8);
}

package main;

run_tests();

__DATA__

=== TEST 1: reply, edit, delete, react, an image and search in chromium; a user offline all along catches up
--- perl_timeout: 280
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# the worker's group starts at the topic's beginning: it has caught up
# once a message sent now is a row
my $pid = start_persist('--group-id=t123');
my $w = member('warm');
my $wc = conversation('warm', 'direct', 'up');
send_receipted($w, $wc, 'warm');
my $until = time + 120;
sleep 0.25 while time < $until
    && !(pg_query("SELECT count(*) FROM messages"
                  . " WHERE conversation_id = '$wc'"))[0][0];
my ($out, $rc) = run_browser('lifecycle.spec.mjs');
kill 'TERM', $pid;
waitpid($pid, 0);
diag($out) if $rc != 0 || $ENV{TEST_VERBOSE};
is($rc, 0, 'the browser test exits 0');
like($out, qr/^# all browser checks passed$/m, 'every browser check passed');
--- no_error_log
[error]
