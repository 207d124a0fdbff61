# 097-chatctl.t: the development setup (scripts/chatctl, behind make
# start/status/token/psql/stop) on ports other than the defaults: the
# commands after start remember them (var/env), the embedded configuration
# serves the metrics, and stop forgets them.

use lib 't/lib';
use Test::Chat;

# chatctl runs the whole development system on Debian's nginx, which cannot
# load a module built for the sanitizer build's nginx: make test-asan
# (t/asan/run.sh) leaves this file to make test
plan(skip_all => 'the development system runs Debian\'s nginx, not the'
                 . ' sanitizer build (make test runs this file)')
    if $ENV{CHAT_ASAN};

plan_from_blocks();

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::StompTCP;
use File::Path qw(remove_tree);

our $VAR = servroot() . '/var';

# chatctl(args, env) with only CHAT_VAR (and the build's paths) set unless
# env says more: (exit code, stdout and stderr)
sub chatctl {
    my ($args, %env) = @_;
    local %ENV = %ENV;
    delete @ENV{qw(CHAT_PORT CHAT_PORT2 CHAT_REDIS_PORT CHAT_PG_PORT
                   CHAT_JWT_SECRET NODES CHAT_WORKERS CHAT_STOMP_PORT
                   CHAT_STOMP_TLS_PORT CHAT_STOMP_PORT2
                   CHAT_STOMP_TLS_PORT2)};
    $ENV{CHAT_VAR} = $VAR;
    $ENV{CHAT_MODULE} = $Test::Chat::MODULE;
    $ENV{CHAT_WORKERS} = 1;
    $ENV{$_} = $env{$_} for keys %env;
    my $out = `scripts/chatctl $args 2>&1`;
    return ($? >> 8, $out);
}

sub var_dir { $VAR }

sub port_open {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $_[0], Proto => 'tcp',
                                 Timeout => 1) ? 1 : 0;
}

END { chatctl('stop') if -f "$VAR/env" }

package main;

run_tests();

__DATA__

=== TEST 1: start on other ports; the commands after it remember them
--- config
    location = /unused {
        return 204;
    }
--- tests: 17
--- perl_timeout: 180
--- perl
my $VAR = var_dir();
remove_tree($VAR);
my ($port, $redis, $pg) = (free_port(), free_port(), free_port());
my ($stomp, $stomp_tls) = (free_port(), free_port());
my ($rc, $out) = chatctl('start', CHAT_PORT => $port,
                         CHAT_REDIS_PORT => $redis, CHAT_PG_PORT => $pg,
                         CHAT_STOMP_PORT => $stomp,
                         CHAT_STOMP_TLS_PORT => $stomp_tls,
                         CHAT_JWT_SECRET => 'first-contact-secret');
is($rc, 0, 'chatctl start on other ports') or diag($out);
like($out, qr{metrics +http://127\.0\.0\.1:$port/metrics},
     'start says where the metrics are');
ok(-f $VAR . "/env", 'the settings are kept in var/env');
($rc, $out) = chatctl('status');
like($out, qr/^nginx 1 +running +127\.0\.0\.1:$port /m,
     'status without the variables: nginx on its port');
like($out, qr/^redis +running +127\.0\.0\.1:$redis$/m, 'Redis on its port');
like($out, qr/^stomp tcp +listening +127\.0\.0\.1:$stomp$/m,
     'status: STOMP over TCP on its port');
like($out, qr/^stomp tls +listening +127\.0\.0\.1:$stomp_tls$/m,
     'status: STOMP over TLS on its port');
($rc, my $token) = chatctl('token alice');
chomp $token;
for my $tls (0, 1) {
    my $c = eval {
        Test::Chat::StompTCP::tcp_stomp_connect(
            token => $token, tls => $tls, ca => "$VAR/tls/cert.pem",
            port => $tls ? $stomp_tls : $stomp)
    };
    is($c && $c->{connected}{headers}{'user-name'}, 'alice',
       'STOMP over ' . ($tls ? 'TLS (var/tls/cert.pem verified)' : 'TCP')
       . ': CONNECTED as alice')
        or diag($@);
}
my ($st) = api(GET => '/conversations', undef, undef, token => $token,
               port => $port);
is($st, 200, 'token signs with the secret of the running instance');
my $sql = 'SELECT count(*) > 0 FROM schema_migrations';
($rc, $out) = chatctl(qq{psql -XAtc "$sql"});
is($out, "t\n", 'psql reaches its database');
my (undef, $h, $body) = http_request(GET => '/metrics', [], undef,
                                     port => $port);
like($body, qr/^ngx_chat_\w+ \d/m,
     'the embedded configuration serves /metrics');
my $cli = do {
    local $ENV{CHAT_VAR} = $VAR;
    delete local $ENV{CHAT_PORT};
    delete local $ENV{CHAT_JWT_SECRET};
    `echo /list | $^X scripts/chat-cli.pl alice 2>&1`;
};
like($cli, qr/^connected as alice/m, 'the CLI finds the port and secret');
($rc, $out) = chatctl('stop');
is($rc, 0, 'chatctl stop') or diag($out);
ok(!-e $VAR . "/env", 'var/env is gone');
ok(!port_open($port), 'nginx stopped');
ok(!port_open($redis), 'Redis stopped');
--- no_error_log
[error]
