# conf/production.conf as shipped: nginx -t accepts it once its <...>
# placeholders are filled in, it has TCP keepalive on every listen and
# limit_req on the REST API; and its limit_req lines, put in front of the
# API, answer a flood from one address with 429 and the API's JSON error
# while a user of the WebSocket location keeps a low round trip.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use POSIX ();

plan_from_blocks();

my $file = "$Test::Chat::ROOT/conf/production.conf";
open(my $fh, '<', $file) or die "$file: $!\n";
my $prod = do { local $/; <$fh> };
close $fh;

# the limit_req lines of the file, for the blocks' configuration
my ($zone) = $prod =~ /^\s*(limit_req_zone [^;]+;)/m;
my ($status) = $prod =~ /^\s*(limit_req_status [^;]+;)/m;
my ($level) = $prod =~ /^\s*(limit_req_log_level [^;]+;)/m;
my ($limit) = $prod =~ /^\s*(limit_req zone=[^;]+;)/m;

$ENV{TEST_NGINX_PROD_LIMIT_REQ_HTTP} = join "\n", grep { defined } $zone,
                                                              $status, $level;
$ENV{TEST_NGINX_PROD_CONFIG} = chat_config(more => <<"_EOC_");
    location /limited/chat/api/ {
        chat_api;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
        @{[ $limit // '' ]}
    }
_EOC_

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub prod_text { $prod }
sub limit_lines { ($zone, $status, $level, $limit) }

package main;

run_tests();

__DATA__

=== TEST 1: nginx -t accepts conf/production.conf with its placeholders filled in
--- tests: 5
--- perl
my $root = Test::Chat::servroot() . '/prod';
system('mkdir', '-p', "$root/conf", "$root/logs", "$root/ssl") == 0
    or die "mkdir\n";
system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=chat"
       . " -keyout $root/ssl/privkey.pem -out $root/ssl/fullchain.pem"
       . " >$root/logs/openssl.log 2>&1") == 0 or die "openssl failed\n";
open(my $s, '>', "$root/conf/chat-secret.conf") or die;
print $s "chat_jwt_secret \"" . ('k' x 32) . "\";\n";
close $s;

my $prod = prod_text();
my $c = $prod;
$c =~ s{^load_module \S+;}{load_module $Test::Chat::MODULE;}m;
$c =~ s{^user \S+;}{}m if $> != 0;
$c =~ s{/var/log/nginx/}{$root/logs/}g;
$c =~ s{/run/nginx\.pid}{$root/logs/nginx.pid}g;
$c =~ s{/etc/nginx/chat-secret\.conf}{$root/conf/chat-secret.conf}g;
$c =~ s{/etc/ssl/<chat\.example\.com>/}{$root/ssl/}g;
$c =~ s{<from your secret store>}{x}g;
$c =~ s{<([^<>\s]+)>}{$1}g;
my @left = grep { !/^\s*#/ && /[<>]/ } split /\n/, $c;
is(scalar @left, 0, 'every placeholder filled') or diag(join "\n", @left);
open(my $o, '>', "$root/conf/nginx.conf") or die;
print $o $c;
close $o;
my $out = `'$Test::Chat::BINARY' -t -p '$root/' -c conf/nginx.conf -e logs/error.log 2>&1`;
is($? >> 8, 0, 'nginx -t exits 0') or diag($out);
like($out, qr/test is successful/, 'and says the test is successful');
my @listen = $prod =~ /^\s*listen ([^;]+);/mg;
is(scalar(grep { !/so_keepalive=/ } @listen), 0,
   'so_keepalive on every listen (' . scalar(@listen) . ')');
like($prod, qr!location /chat/api/ \{[^}]*limit_req zone=chat_api[^}]*\}!s,
     'limit_req in the API location');
--- no_error_log
[error]



=== TEST 2: production.conf's limit_req before the API: a flood of 150 calls from one address gets 429 with the JSON error after the burst; a WebSocket user keeps a low round trip
--- tests: 5
--- http_config
$TEST_NGINX_PROD_LIMIT_REQ_HTTP
--- config
$TEST_NGINX_PROD_CONFIG
--- perl
ok(!grep({ !defined } limit_lines()), 'production.conf has the four lines');
my $alice = member('alice2');
my $aconv = conversation('alice2', 'direct', 'bob2');
pipe(my $rd, my $wr) or die "pipe: $!";
my @kids;
for my $k (1 .. 3) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        my @out;
        for (1 .. 50) {
            my ($st, $j) = api(GET => '/limited/chat/api/conversations',
                               "mal2-$k", undef, prefix => '');
            push @out, $st == 429 ? "429:" . ($j->{error}{code} // 'none')
                                  : $st;
        }
        print $wr join(' ', @out), "\n";
        close $wr;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;
my $rtt = round_trip($alice, $aconv, 5);
waitpid($_, 0) for @kids;
my %st;
while (my $l = <$rd>) {
    $st{$_}++ for split ' ', $l;
}
cmp_ok($st{200} // 0, '>=', 41, 'the burst (40) and more passed')
    or diag(join ' ', %st);
cmp_ok($st{'429:rate_limited'} // 0, '>=', 50, 'many got 429 rate_limited')
    or diag(join ' ', %st);
is(($st{200} // 0) + ($st{'429:rate_limited'} // 0), 150,
   'nothing else') or diag(join ' ', %st);
cmp_ok($rtt, '<', 0.25, 'the WebSocket user\'s round trip stays low')
    or diag("rtt: $rtt s");
--- no_error_log
[error]
