# JWT claims besides exp and sub: nbf and iat with chat_jwt_leeway
# (default 60 s), and with chat_jwt_audience / chat_jwt_issuer set, aud (a
# string or an array) and iss; a token failing them is refused with the
# reason, at a STOMP CONNECT (ERROR unauthorized, closed) and at the REST
# API (401), counted; another user keeps a low round trip meanwhile.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use POSIX ();

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub refused {
    metric('ngx_chat_limited_total{limit="jwt_claims"}') // -1e9;
}

sub tok {
    my ($user, %claims) = @_;
    return make_token($user, claims => \%claims);
}

# the REST answer to a token: "200", or "401 <message>"
sub rest {
    my ($t) = @_;
    my ($st, $j) = api(GET => '/conversations', undef, undef, token => $t);
    return $st == 200 ? '200' : "$st " . ($j->{error}{message} // '');
}

# a STOMP CONNECT with the token: "CONNECTED", or "ERROR <message>: <body>"
sub stomp {
    my ($t) = @_;
    my $c = ws_connect('/ws/chat');
    $c->stomp_send('CONNECT', [['accept-version', '1.2'],
                               ['passcode', $t]], '');
    my $f = $c->stomp_recv(3) or return 'nothing';
    return 'CONNECTED' if $f->{command} eq 'CONNECTED';
    my $closed = defined $c->expect_close(2) ? '' : ' (not closed)';
    return "$f->{command} $f->{headers}{message}: $f->{body}$closed";
}

package main;

run_tests();

__DATA__

=== TEST 1: nbf and iat with the default leeway (60 s): within it accepted, beyond it refused with the reason, over STOMP and REST, counted
--- tests: 10
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $now = time;
my $m0 = refused();
is(rest(tok('al1', nbf => $now + 30)), '200', 'REST: nbf 30 s ahead');
is(stomp(tok('al1', nbf => $now + 30)), 'CONNECTED', 'STOMP: nbf 30 s ahead');
is(rest(tok('al1', nbf => $now + 300)), '401 token not valid yet (nbf)',
   'REST: nbf 5 minutes ahead');
is(stomp(tok('al1', nbf => $now + 300)),
   'ERROR unauthorized: token not valid yet (nbf)', 'STOMP: the same');
is(rest(tok('al1', iat => $now - 86400, nbf => $now - 86400)), '200',
   'REST: issued yesterday');
is(rest(tok('al1', iat => $now + 300)),
   '401 token issued in the future (iat)', 'REST: iat 5 minutes ahead');
is(stomp(tok('al1', iat => $now + 300)),
   'ERROR unauthorized: token issued in the future (iat)', 'STOMP: the same');
is(rest(tok('al1', nbf => 'tomorrow')), '401 nbf is not a number',
   'REST: nbf not a number');
is(refused() - $m0, 5, 'the five refusals counted');
is(rest(tok('al1', aud => 'anyone', iss => 'anyone')), '200',
   'aud and iss are not checked unless configured');
--- no_error_log
[error]



=== TEST 2: chat_jwt_leeway 0: nbf a few seconds ahead is refused
--- tests: 2
--- config
    chat_jwt_leeway 0;
$TEST_NGINX_CHAT_CONFIG
--- perl
my $now = time;
is(rest(tok('al2', nbf => $now + 5)), '401 token not valid yet (nbf)',
   'nbf 5 s ahead');
is(rest(tok('al2', nbf => $now - 1)), '200', 'nbf a second ago');
--- no_error_log
[error]



=== TEST 3: chat_jwt_audience and chat_jwt_issuer: aud as a string or in an array, iss exactly; else refused with the reason
--- tests: 9
--- config
    chat_jwt_audience chat.example.com;
    chat_jwt_issuer https://id.example.com/;
$TEST_NGINX_CHAT_CONFIG
--- perl
my $iss = 'https://id.example.com/';
is(rest(tok('al3', aud => 'chat.example.com', iss => $iss)), '200',
   'aud a string');
is(rest(tok('al3', aud => ['other', 'chat.example.com'], iss => $iss)),
   '200', 'aud an array that holds it');
is(stomp(tok('al3', aud => ['chat.example.com'], iss => $iss)), 'CONNECTED',
   'STOMP: accepted');
is(rest(tok('al3', iss => $iss)), '401 aud missing', 'no aud');
is(rest(tok('al3', aud => ['other', 'chat'], iss => $iss)),
   '401 wrong audience (aud)', 'an array without it');
is(stomp(tok('al3', aud => 'other', iss => $iss)),
   'ERROR unauthorized: wrong audience (aud)', 'STOMP: another audience');
is(rest(tok('al3', aud => 'chat.example.com')), '401 iss missing', 'no iss');
is(rest(tok('al3', aud => 'chat.example.com', iss => 'https://evil/')),
   '401 wrong issuer (iss)', 'another issuer');
is(stomp(tok('al3', aud => 'chat.example.com', iss => "${iss}x")),
   'ERROR unauthorized: wrong issuer (iss)', 'STOMP: another issuer');
--- no_error_log
[error]



=== TEST 4: 300 CONNECTs with a token not valid yet are each refused, and a bystander's round trip stays low
--- tests: 2
--- perl_timeout: 90
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $alice = member('alice4');
my $aconv = conversation('alice4', 'direct', 'bob4');
my $t = tok('mal4', nbf => time + 3600);
pipe(my $rd, my $wr) or die "pipe: $!";
my @kids;
for my $k (1 .. 3) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        my $n = grep { /^ERROR unauthorized: token not valid yet/ }
                map { stomp($t) } 1 .. 100;
        print $wr "$n\n";
        close $wr;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;
my $rtt = round_trip($alice, $aconv, 5);
waitpid($_, 0) for @kids;
my $n = 0;
$n += $_ for map { chomp; $_ } <$rd>;
is($n, 300, 'all 300 refused with the reason');
cmp_ok($rtt, '<', 0.25, 'the bystander\'s round trip stays low')
    or diag("rtt: $rtt s");
--- no_error_log
[error]
