# chat_max_metadata_size, and bodies that are not JSON objects: a SEND's
# metadata is capped apart from its content (too_large), and a body that
# cannot be read is rejected with bad_request saying what is wrong with
# it (bad UTF-8, \u0000, a NUL byte, where the JSON breaks).

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG1K} = chat_config(
    ws => 'chat_max_metadata_size 1k;', metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="metadata_size"}') // -1e9;
}

# a SEND of the raw body bytes (a binary WebSocket frame: any bytes), with
# a receipt; the rejection it gets, or undef
sub raw_send {
    my ($c, $body, $r) = @_;
    $c->send_raw(ws_frame(opcode => 2, payload => stomp_frame('SEND', {
        destination => '/app/chat.send', 'content-type' => 'application/json',
        receipt => $r }, $body)));
    my (undef, $err) = collect_answers($c, 1, 5);
    return $err->{$r};
}

package main;

run_tests();

__DATA__

=== TEST 1: 1k: metadata of 2 KB is too_large, 900 bytes pass; the content limit is apart
--- tests: 5
--- config
$TEST_NGINX_CHAT_CONFIG1K
--- perl
my $m = member('mallory1');
my $conv = conversation('mallory1', 'direct', 'bob1');
my $m0 = limited();
my $e = raw_send($m, json_encode({ conversationId => $conv, content => 'hi',
                                   metadata => { k => 'v' x 2000 } }), 'r1');
is($e && $e->{code}, 'too_large', '2 KB of metadata: too_large');
like($e && $e->{message}, qr/metadata.*chat_max_metadata_size/,
     'the message names the metadata and the directive');
is(limited() - $m0, 1, 'counted in ngx_chat_limited_total');
$m->send_json('/app/chat.send', { conversationId => $conv, content => 'hi',
                                  metadata => { k => 'v' x 900 } },
              receipt => 'r2');
my ($rc) = collect_answers($m, 1, 5);
ok($rc->{r2}, '900 bytes of metadata: accepted');
ok(eval { send_receipted($m, $conv, 'go on') }, 'the session goes on');
--- no_error_log
[error]



=== TEST 2: the audit's buffer filler with the default (4k): 60 KB of metadata is refused, a bystander's round trip stays low
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $alice = member('alice2');
my $aconv = conversation('alice2', 'direct', 'bob2');
my $m = member('mallory2');
my $conv = conversation('mallory2', 'group', { name => 'g' }, 'alice2');
my $big = json_encode({ conversationId => $conv, content => 'x',
                        metadata => { k => 'v' x (60 * 1024 - 200) } });
my %codes;
for my $i (1 .. 20) {
    my $e = raw_send($m, $big, "r$i");
    $codes{ $e ? $e->{code} : 'accepted' }++;
}
is($codes{too_large}, 20, 'all 20 refused with too_large')
    or diag(join ' ', %codes);
is(scalar @{ (api(GET => "/conversations/$conv/messages?limit=50",
                  'alice2'))[1]{messages} || [] }, 0,
   'none reached the history');
cmp_ok(round_trip($alice, $aconv, 5), '<', 0.25,
       'the bystander\'s round trip stays low');
--- no_error_log
[error]



=== TEST 3: bodies that are not JSON objects: bad_request that says what is wrong
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m = member('mallory3');
my $conv = conversation('mallory3', 'direct', 'bob3');
my @cases = (
    [qq({"conversationId":"$conv","content":"a\xff\xfeb"}), qr/not valid UTF-8/,
     'bad UTF-8'],
    [qq({"conversationId":"$conv","content":"a\\u0000b"}),
     qr/contains \\u0000, which is not allowed/, '\u0000'],
    [qq({"conversationId":"$conv","content":"a"}\0), qr/NUL byte/,
     'a NUL byte'],
    [qq({"conversationId":"$conv",\n"content":}), qr/not valid JSON \(line 2, column \d+\)/,
     'broken JSON'],
    ['[1,2]', qr/JSON but not an object/, 'an array'],
    ['', qr/empty/, 'no body'],
);
my $i = 0;
for my $t (@cases) {
    my $e = raw_send($m, $t->[0], 'r' . ++$i);
    like($e ? "$e->{code}: $e->{message}" : 'accepted',
         qr/^bad_request: .*$t->[1]/, $t->[2]);
}
ok(eval { send_receipted($m, $conv, 'go on') }, 'the session goes on');
--- no_error_log
[error]
