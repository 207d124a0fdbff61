# chat_max_sessions_per_user: a user's sessions on a worker are counted at
# CONNECT; one more is refused with an ERROR frame and the connection
# closes, the user's other sessions and the other users go on.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG3} = chat_config(
    ws => 'chat_max_sessions_per_user 3;', metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG0} = chat_config(
    ws => 'chat_max_sessions_per_user 0;', metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

# (sessions accepted, ERROR frames) of n CONNECTs of user, kept open
sub open_sessions {
    my ($user, $n, $keep) = @_;
    my ($ok, @errors) = (0);

    for (1 .. $n) {
        my $c = ws_connect('/ws/chat') or die "no connection\n";
        $c->stomp_send('CONNECT', [['accept-version', '1.2'],
                                   [host => 'localhost'],
                                   [passcode => make_token($user)]], '');
        my $f = $c->stomp_recv(3);

        if ($f && $f->{command} eq 'CONNECTED') {
            $ok++;
            push @$keep, $c;
        } else {
            push @errors, $f ? $f->{headers}{message} // '' : 'nothing';
        }
    }

    return ($ok, @errors);
}

sub limited {
    metric('ngx_chat_limited_total{limit="sessions_per_user"}') // -1e9;
}

package main;

run_tests();

__DATA__

=== TEST 1: the fourth session of a user is refused with "too many sessions", the three stay
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG3
--- perl
my @keep;
my $m0 = limited();
my ($ok, @errors) = open_sessions('mallory1', 4, \@keep);
is($ok, 3, 'three sessions accepted');
is(scalar @errors, 1, 'one refused');
is($errors[0], 'too many sessions', 'ERROR says too many sessions');
my $conv = conversation('mallory1', 'direct', 'alice1');
$keep[0]->subscribe('/user/queue/messages', 'm');
ok(eval { send_receipted($keep[0], $conv, 'still here') },
   'an accepted session still works');
$keep[1]->disconnect;
$keep[1]->is_eof(3);
($ok) = open_sessions('mallory1', 1, \@keep);
is($ok, 1, 'one gone: a new one is accepted');
($ok) = open_sessions('alice1', 3, \@keep);
is($ok, 3, 'another user is not counted with mallory');
is(limited() - $m0, 1, 'counted in ngx_chat_limited_total');
--- no_error_log
[error]



=== TEST 2: the audit's attack: 300 sessions of one user; 16 (the default) get in, a bystander's round trip stays low
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my @keep;
my $alice = member('alice2');
my $conv = conversation('alice2', 'direct', 'bob2');
my $before = round_trip($alice, $conv, 3);
my $m0 = limited();
my ($ok, @errors) = open_sessions('mallory2', 300, \@keep);
is($ok, 16, '16 sessions accepted');
is(scalar(grep { $_ eq 'too many sessions' } @errors), 284,
   'the other 284 refused with "too many sessions"');
my $rtt = round_trip($alice, $conv, 5);
cmp_ok($rtt, '<', 0.25, 'the bystander\'s round trip stays low')
    or diag("before: $before, after: $rtt");
is(limited() - $m0, 284, 'every refusal counted');
--- no_error_log
[error]



=== TEST 3: chat_max_sessions_per_user 0: no limit
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG0
--- perl
my @keep;
my ($ok) = open_sessions('mallory3', 40, \@keep);
is($ok, 40, 'forty sessions of one user');
--- no_error_log
[error]



=== TEST 4: two workers: the count is per worker, each refuses past its limit
--- workers: 2
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG3
--- perl
my @keep;
my ($ok, @errors) = open_sessions('mallory4', 40, \@keep);
cmp_ok($ok, '<=', 6, 'at most three per worker');
is(scalar(grep { $_ eq 'too many sessions' } @errors), 40 - $ok,
   'the others refused with "too many sessions"');
--- no_error_log
[error]
