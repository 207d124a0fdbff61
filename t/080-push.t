# Push notifications: /devices, and the push worker (chat-push) against a
# fake FCM and OAuth2 server of ours (t/tools/fake-fcm.pl): the JWT
# assertion, the message JSON, batching and collapse, presence, several
# devices, token deletion, retries, and a restart that neither loses nor
# doubles a notification. Messages are produced to Kafka with
# chat-kafka-produce, as the gateway writes them.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Cwd qw(abs_path);
use File::Path qw(make_path);
use POSIX ();
use Time::HiRes qw(time sleep);

our ($dir, $bin, $fcm_port, $bootstrap, @pids, $push_pid, $push_log,
     $msg_id, %seq);

$bin = $ENV{CHAT_BIN} // abs_path('build/bin');
$msg_id = 7000;

sub spawn {
    my ($log, @cmd) = @_;
    my $pid = fork() // die "fork: $!\n";

    if ($pid == 0) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log) or POSIX::_exit(1);
        open(STDERR, '>&', \*STDOUT);
        exec(@cmd) or POSIX::_exit(127);
    }

    push @pids, $pid;
    return $pid;
}

sub wait_file {
    my ($path, $secs) = @_;
    my $until = time + $secs;
    sleep 0.05 while !-s $path && time < $until;
    die "no $path\n" unless -s $path;
    open(my $fh, '<', $path) or die "$path: $!\n";
    my $line = <$fh>;
    chomp $line;
    return $line;
}

# the broker, the test key and the fake FCM, once per file
sub setup {
    return if $dir;

    $dir = servroot() . '/push';
    make_path($dir);
    unlink glob("$dir/*");

    -x "$bin/chat-push" or die "$bin/chat-push is missing: make workers-push\n";

    system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
           . "-out $dir/key.pem 2>/dev/null && openssl pkey -in "
           . "$dir/key.pem -pubout -out $dir/pub.pem") == 0
        or die "openssl failed\n";

    # a key of another account: its assertions must be refused
    system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
           . "-out $dir/other.pem 2>/dev/null") == 0
        or die "openssl failed\n";

    spawn("$dir/fcm.log", 't/tools/fake-fcm.pl', '--pubkey', "$dir/pub.pem",
          '--project', 'test-project', '--port-file', "$dir/fcm.port");
    $fcm_port = wait_file("$dir/fcm.port", 10);

    if ($ENV{TEST_NGINX_KAFKA_BROKERS}) {
        $bootstrap = $ENV{TEST_NGINX_KAFKA_BROKERS};
    } else {
        spawn("$dir/broker.log", "$bin/chat-kafka-broker",
              '--bootstrap-file', "$dir/bootstrap");
        $bootstrap = wait_file("$dir/bootstrap", 10);
    }

    key_file("$dir/sa.json", "$dir/key.pem");
    key_file("$dir/bad-sa.json", "$dir/other.pem");

    # 003_devices.sql on stores started before it existed
    system("sql/migrate.sh '" . pg_dsn() . "' >/dev/null") == 0
        or die "sql/migrate.sh failed\n";
}

sub key_file {
    my ($path, $pem) = @_;
    open(my $fh, '<', $pem) or die "$pem: $!\n";
    local $/;
    my $key = <$fh>;
    open(my $out, '>', $path) or die "$path: $!\n";
    print $out json_encode({
        type => 'service_account', project_id => 'test-project',
        private_key_id => 'k1', private_key => $key,
        client_email => 'push@test-project.iam.gserviceaccount.com',
        client_id => '1', token_uri => "http://127.0.0.1:$fcm_port/token" });
    close $out;
}

# starts chat-push; waits until it has its partitions
sub push_start {
    my (%o) = @_;
    my $group = delete $o{group} // 'chat-push-test';
    my $creds = exists $o{credentials} ? delete $o{credentials}
                                       : "$dir/sa.json";
    my $wait = delete $o{wait} // 1;

    setup();

    $push_log = "$dir/push-" . time . ".log";

    my @args = ("--brokers=$bootstrap", "--group-id=$group",
                '--database=' . pg_dsn(),
                '--redis=127.0.0.1:' . redis_port(),
                "--fcm-url=http://127.0.0.1:$fcm_port",
                '--window=1000', '--retry-base=200', '--log-level=debug',
                '--kafka.session.timeout.ms=6000',
                '--kafka.heartbeat.interval.ms=500');
    push @args, "--fcm-credentials=$creds" if defined $creds;
    # one worker at a time serves the metrics port (the dry one runs beside)
    push @args, '--metrics-listen=127.0.0.1:' . metrics_port()
        unless $group =~ /dry/;
    push @args, "--$_=$o{$_}" for sort keys %o;

    local $ENV{CHAT_FCM_CREDENTIALS};
    delete $ENV{CHAT_FCM_CREDENTIALS};

    my $pid = spawn($push_log, "$bin/chat-push", @args);
    $push_pid = $pid unless $group =~ /dry/;

    push_wait_log(qr/assigned \d+ partition/, 30) if $wait;

    return $pid;
}

sub push_stop {
    my ($sig, $pid) = @_;
    $pid //= $push_pid;
    return unless $pid;
    kill $sig // 'TERM', $pid;
    my $until = time + 40;
    while (time < $until) {
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }
    undef $push_pid if $push_pid && $pid == $push_pid;
}

sub push_log_text {
    my ($log) = @_;
    open(my $fh, '<', $log // $push_log) or return '';
    local $/;
    return <$fh> // '';
}

sub push_wait_log {
    my ($re, $secs, $log) = @_;
    my $until = time + ($secs // 10);
    while (time < $until) {
        return 1 if push_log_text($log) =~ $re;
        sleep 0.05;
    }
    die "chat-push did not log $re:\n" . push_log_text($log);
}

sub fcm {
    my ($path, $data) = @_;
    my ($st, undef, $b) = http_request($data ? 'POST' : 'GET', $path,
                                ['Content-Type: application/json'],
                                $data ? json_encode($data) : undef,
                                port => $fcm_port);
    die "fake FCM $path: $st\n" unless $st == 200;
    return json_decode($b);
}

# the fake FCM forgets what it saw; the worker runs
sub fcm_reset {
    setup();
    fcm('/_reset', {});
    push_start() unless $push_pid;
}

sub fcm_port { $fcm_port }
sub push_log { $push_log }

# the push worker's Prometheus port
my $metrics_port;
sub metrics_port { $metrics_port //= free_port() }

# chat_push_fcm_sends_total{outcome="..."}, or 0
sub fcm_outcomes {
    my ($outcome) = @_;
    my (undef, undef, $text) = http_request(GET => '/metrics', [], undef,
                                            port => metrics_port());
    return $1 if ($text // '') =~
        /^chat_push_fcm_sends_total\{outcome="\Q$outcome\E"\} (\d+)$/m;
    return 0;
}
sub dir { $dir }

sub sends {
    my ($conv) = @_;
    return grep { $_->{kind} eq 'send'
                  && (!defined $conv
                      || ($_->{body}{message}{data}{conversationId} // '')
                         eq $conv) } @{ fcm('/_requests') };
}

sub tokens_requested { grep { $_->{kind} eq 'token' } @{ fcm('/_requests') } }

# waits until cond(list of sends) is true, or secs
sub wait_sends {
    my ($conv, $n, $secs) = @_;
    my $until = time + ($secs // 10);
    my @s;
    while (time < $until) {
        @s = sends($conv);
        return @s if @s >= $n;
        sleep 0.1;
    }
    return @s;
}

sub device {
    my ($user, $token, $platform) = @_;
    my ($st) = api(POST => '/devices', $user,
                   { platform => $platform // 'android', token => $token });
    die "device: $st\n" unless $st == 201;
}

sub display_name {
    my ($user, $name) = @_;
    my ($st) = api(PUT => '/users/me', $user, { displayName => $name });
    die "name: $st\n" unless $st == 200;
}

# produces messages as the gateway writes them: [sender, conv, text], ...
sub produce {
    my (@msgs) = @_;
    setup();
    open(my $fh, '|-', "$bin/chat-kafka-produce --brokers=$bootstrap "
                       . ">/dev/null") or die "produce: $!\n";
    for my $m (@msgs) {
        my ($sender, $conv, $text) = @$m;
        print $fh json_encode({
            type => 'message', messageId => '' . $msg_id++,
            conversationId => $conv, seq => ++$seq{$conv},
            senderId => $sender, content => $text, metadata => {},
            createdAt => '2026-01-01T00:00:00.000Z' }), "\n";
    }
    close $fh or die "chat-kafka-produce failed\n";
}

# a live session of user, as the gateway records it (chat:p:{<user>})
sub online {
    my ($user) = @_;
    my $ms = int(time * 1000) + 60000;
    redis_cmd('ZADD', "chat:p:{$user}", $ms, "test-session-$user");
}

sub offline { redis_cmd('DEL', "chat:p:{$_[0]}") }

# changes of message target of conv by sender (PROTOCOL.md section 10), as
# the gateway writes them: [type, field => value...]...
sub produce_changes {
    my ($sender, $conv, $target, @changes) = @_;
    setup();
    open(my $fh, '|-', "$bin/chat-kafka-produce --brokers=$bootstrap "
                       . ">/dev/null") or die "produce: $!\n";
    for my $t (@changes) {
        my ($type, %more) = @$t;
        print $fh json_encode({
            type => $type, messageId => '' . $msg_id++,
            conversationId => $conv, seq => ++$seq{$conv},
            senderId => $sender, target => $target,
            createdAt => '2026-01-01T00:00:00.000Z', %more }), "\n";
    }
    close $fh or die "chat-kafka-produce failed\n";
}

END {
    local $?;
    kill 'TERM', $_ for @pids;
    waitpid($_, 0) for @pids;
}

package main;

run_tests();

__DATA__

=== TEST 1: POST /devices registers a token, again moves it, DELETE removes only the caller's own
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
setup();
my ($st, $b) = api(POST => '/devices', 'dave',
                   { platform => 'android', token => 'tok-d:1_x-y' });
is($st, 201, 'registered');
is($b->{token} . ' ' . $b->{platform} . ' ' . $b->{userId},
   'tok-d:1_x-y android dave', 'the device in the answer');
($st) = api(POST => '/devices', 'erin',
            { platform => 'web', token => 'tok-d:1_x-y' });
is($st, 201, 'registered again by another user');
is(join(',', map { "@$_" } pg_query("SELECT user_id, platform FROM devices"
                                    . " WHERE token = 'tok-d:1_x-y'")),
   'erin web', 'one row: the token moved to the new user and platform');
($st, $b) = api(POST => '/devices', 'dave', { platform => 'blackberry',
                                              token => 'x' });
is($st, 400, 'an unknown platform is refused');
($st) = api(POST => '/devices', 'dave', { platform => 'ios',
                                          token => 'a b/c' });
is($st, 400, 'a token with other characters is refused');
($st) = api(DELETE => '/devices/tok-d:1_x-y', 'dave');
is($st, 409, 'DELETE of a token taken since answers 409, not 204');
is(scalar(pg_query("SELECT 1 FROM devices WHERE token = 'tok-d:1_x-y'")), 1,
   'but someone else\'s token stays');
($st) = api(DELETE => '/devices/tok-d:1_x-y', 'erin');
is($st, 204, 'the owner deletes it');
is(scalar(pg_query("SELECT 1 FROM devices WHERE token = 'tok-d:1_x-y'")), 0,
   'gone');
($st) = api(GET => '/devices', 'erin');
is($st, 405, 'GET /devices is not allowed');
--- tests: 11
--- no_error_log
[error]



=== TEST 2: an offline member gets one notification on each device, with an assertion signed by the key
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
display_name('alice', 'Alice');
my $c = conversation('alice', 'direct', 'bob');
device('bob', 'tok-bob-a', 'android');
device('bob', 'tok-bob-i', 'ios');
device('alice', 'tok-alice', 'web');
produce(['alice', $c, 'hello bob']);
my @s = wait_sends($c, 2, 10);
sleep 0.5;
@s = sends($c);
is(scalar(@s), 2, 'two sends');
is(join(',', sort map { $_->{token} } @s), 'tok-bob-a,tok-bob-i',
   'to both devices of bob, none to the sender');
is_deeply($s[0]{body}{message}, {
    token => $s[0]{token},
    notification => { title => 'Alice', body => 'hello bob' },
    data => { conversationId => $c, seq => '1', count => '1' },
    android => { collapse_key => $c },
    apns => { headers => { 'apns-collapse-id' => $c } },
    webpush => { notification => { tag => $c } } }, 'the message JSON');
is($s[0]{content_type}, 'application/json', 'as JSON');
my @t = tokens_requested();
is(scalar(@t), 1, 'one access token for both');
ok($t[0]{jwt_ok}, "the assertion's RS256 signature verifies: "
                  . $t[0]{jwt_error});
is($t[0]{claims}{iss} . ' ' . $t[0]{claims}{aud},
   "push\@test-project.iam.gserviceaccount.com "
   . "http://127.0.0.1:" . fcm_port() . "/token", 'iss and aud (token_uri)');
is($t[0]{grant_type}, 'urn:ietf:params:oauth:grant-type:jwt-bearer',
   'the jwt-bearer grant');
cmp_ok(fcm_outcomes('sent'), '>=', 2,
       'the worker counts FCM outcomes at /metrics');
--- tests: 9
--- no_error_log
[error]



=== TEST 3: messages within the window make one notification with the count and newest seq; a later one replaces it
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
display_name('alice', 'Alice');
my $c = conversation('alice', 'direct', 'carl');
device('carl', 'tok-carl', 'android');
produce(['alice', $c, 'one'], ['alice', $c, 'two'], ['alice', $c, 'three']);
my @s = wait_sends($c, 1, 10);
sleep 1.5;
@s = sends($c);
is(scalar(@s), 1, 'one notification for three messages');
my $m = $s[0]{body}{message};
is($m->{notification}{body}, '3 new messages from Alice', 'says how many');
is("$m->{data}{count} $m->{data}{seq}", '3 3', 'count and newest seq');
produce(['alice', $c, 'four']);
@s = wait_sends($c, 2, 10);
is(scalar(@s), 2, 'a message after the window: another notification');
$m = $s[1]{body}{message};
is($m->{android}{collapse_key} . ' ' . $m->{apns}{headers}{'apns-collapse-id'},
   "$c $c", 'with the same collapse key');
is("$m->{data}{count} $m->{data}{seq}", '1 4', 'count 1, seq 4');
--- tests: 6
--- no_error_log
[error]



=== TEST 4: a group notification is titled with its name; online members get none
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
display_name('alice', 'Alice');
my $c = conversation('alice', 'group', { name => 'Team' }, 'gina', 'hank');
device('gina', 'tok-gina', 'android');
device('hank', 'tok-hank', 'android');
online('hank');
produce(['alice', $c, 'standup now']);
my @s = wait_sends($c, 1, 10);
sleep 1.5;
@s = sends($c);
is(join(',', map { $_->{token} } @s), 'tok-gina', 'only the offline member');
is($s[0]{body}{message}{notification}{title}, 'Team', 'the group name');
is($s[0]{body}{message}{notification}{body}, 'Alice: standup now',
   'the sender and the text');
offline('hank');
--- tests: 3
--- no_error_log
[error]



=== TEST 5: a user who comes online before the window closes gets nothing
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $c = conversation('alice', 'direct', 'ivan');
device('ivan', 'tok-ivan', 'android');
produce(['alice', $c, 'are you there?']);
push_wait_log(qr/batch ivan\/\Q$c\E opened/, 10);
online('ivan');
push_wait_log(qr/ivan came online: no notification about \Q$c\E/, 5);
sleep 0.3;
is(scalar(sends($c)), 0, 'nothing sent');
offline('ivan');
produce(['alice', $c, 'now?']);
my @s = wait_sends($c, 1, 10);
is(scalar(@s), 1, 'offline again: notified');
--- tests: 2
--- no_error_log
[error]



=== TEST 6: UNREGISTERED (404) and an invalid token delete the token; another INVALID_ARGUMENT does not
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $c = conversation('alice', 'direct', 'judy');
device('judy', 'tok-judy-gone', 'android');
device('judy', 'tok-judy-bad', 'ios');
device('judy', 'tok-judy-arg', 'web');
device('judy', 'tok-judy-ok', 'android');
fcm('/_script', { token => 'tok-judy-gone',
                  responses => [ { status => 404 } ] });
fcm('/_script', { token => 'tok-judy-bad', responses => [ { status => 400,
    body => { error => { code => 400, status => 'INVALID_ARGUMENT',
              message => 'The registration token is not a valid FCM '
                         . 'registration token',
              details => [ { '@type' => 'type.googleapis.com/google.'
                             . 'firebase.fcm.v1.FcmError',
                             errorCode => 'INVALID_ARGUMENT' } ] } } } ] });
fcm('/_script', { token => 'tok-judy-arg', responses => [ { status => 400,
    body => { error => { code => 400, status => 'INVALID_ARGUMENT',
              message => 'Invalid value at message.android.ttl',
              details => [ { '@type' => 'type.googleapis.com/google.rpc.'
                             . 'BadRequest', fieldViolations => [ {
                             field => 'message.android.ttl',
                             description => 'Invalid duration' } ] } ] }
    } } ] });
produce(['alice', $c, 'hi judy']);
my @s = wait_sends($c, 4, 10);
is(scalar(@s), 4, 'one send to each device');
push_wait_log(qr/deleted a device token of judy.*\n.*deleted a device token of judy/s, 5);
is(join(',', map { $_->[0] } pg_query("SELECT token FROM devices WHERE"
                                      . " user_id = 'judy' ORDER BY token")),
   'tok-judy-arg,tok-judy-ok', 'the unregistered and invalid tokens are gone');
sleep 1;
is(scalar(sends($c)), 4, 'no retry of what cannot succeed');
like(push_log_text(), qr/giving up on tok-judy-arg/,
     'the other one is given up');
--- tests: 4
--- no_error_log
[error]



=== TEST 7: 503 and 429 are retried with backoff, honouring Retry-After; 401 renews the access token once
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $c = conversation('alice', 'direct', 'kim');
device('kim', 'tok-kim', 'android');
fcm('/_script', { token => 'tok-kim', responses => [
    { status => 503, retry_after => '1' }, { status => 429 },
    { status => 503 } ] });
produce(['alice', $c, 'retry me']);
my @s = wait_sends($c, 4, 15);
is(join(',', map { $_->{status} } @s), '503,429,503,200',
   'retried until it went through');
my $g1 = $s[1]{at} - $s[0]{at};
my $g2 = $s[2]{at} - $s[1]{at};
my $g3 = $s[3]{at} - $s[2]{at};
ok($g1 >= 0.95 && $g1 < 1.8, "Retry-After: 1 was honoured ($g1 s)");
ok($g2 >= 0.38 && $g3 >= 0.75 && $g3 > $g2 * 1.5,
   "exponential backoff without Retry-After ($g2 s, then $g3 s)");
sleep 1;
is(scalar(sends($c)), 4, 'nothing after the success');

fcm_reset();
fcm('/_expire', {});
produce(['alice', $c, 'after expiry']);
@s = wait_sends($c, 2, 10);
is(join(',', map { $_->{status} } @s), '401,200',
   '401, then sent with a new access token');
is(scalar(tokens_requested()), 1, 'one new access token');
--- tests: 6
--- no_error_log
[error]



=== TEST 8: a worker stopped with an open window sends it before exiting, and once only
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $c = conversation('alice', 'direct', 'liam');
device('liam', 'tok-liam', 'android');
produce(['alice', $c, 'm1'], ['alice', $c, 'm2']);
push_wait_log(qr/batch liam\/\Q$c\E opened/, 10);
my $log = push_log();
push_stop('TERM');
like(push_log_text($log), qr/stopped/, 'the worker stopped cleanly');
my @s = sends($c);
is(scalar(@s), 1, 'the open window was sent while draining');
is($s[0]{body}{message}{data}{count}, '2', 'with both messages');
push_start();
sleep 2.5;
is(scalar(sends($c)), 1, 'not sent again after the restart');
--- tests: 4
--- no_error_log
[error]



=== TEST 9: a worker killed with an open window: its messages are consumed again and notified once
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $c = conversation('alice', 'direct', 'mia');
device('mia', 'tok-mia', 'android');
my $c2 = conversation('alice', 'direct', 'max');
device('max', 'tok-max', 'android');
produce(['alice', $c2, 'earlier']);
wait_sends($c2, 1, 10);
sleep 0.5;
produce(['alice', $c, 'm1'], ['alice', $c, 'm2'], ['alice', $c, 'm3']);
push_wait_log(qr/batch mia\/\Q$c\E opened/, 10);
push_stop('KILL');
is(scalar(sends($c)), 0, 'killed before the window closed');
push_start();
my @s = wait_sends($c, 1, 30);
sleep 2;
@s = sends($c);
is(scalar(@s), 1, 'notified once after the restart');
is($s[0]{body}{message}{data}{count} . ' ' . $s[0]{body}{message}{data}{seq},
   '3 3', 'for all three messages');
is(scalar(sends($c2)), 1, 'what was sent before the kill is not sent again');
--- tests: 4
--- perl_timeout: 90
--- no_error_log
[error]



=== TEST 10: the text is truncated, and left out with preview off
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
push_stop('TERM');
push_start('preview-length' => 10);
display_name('alice', 'Alice');
my $c = conversation('alice', 'direct', 'nina');
device('nina', 'tok-nina', 'android');
produce(['alice', $c, "0123456789abc\x{e9}"]);
my @s = wait_sends($c, 1, 10);
is($s[0]{body}{message}{notification}{body}, "0123456789\x{2026}",
   'cut to 10 characters and an ellipsis');
push_stop('TERM');
push_start(preview => 'false');
produce(['alice', $c, 'secret']);
@s = wait_sends($c, 2, 10);
is($s[1]{body}{message}{notification}{body}, 'New message from Alice',
   'no text with preview off');
unlike(json_encode($s[1]{body}), qr/secret/, 'the text is nowhere');
--- tests: 3
--- perl_timeout: 90
--- no_error_log
[error]



=== TEST 11: without credentials it says so at start and logs what it would send
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $pid = push_start(credentials => undef, group => 'chat-push-dry',
                     wait => 0);
my $log = push_log();
push_wait_log(qr/DRY RUN/, 10, $log);
my $c = conversation('alice', 'direct', 'olga');
device('olga', 'tok-olga', 'android');
push_wait_log(qr/assigned \d+ partition/, 30, $log);
produce(['alice', $c, 'dry']);
push_wait_log(qr/dry run: would send to tok-olga: .*"conversationId":"\Q$c\E"/,
              10, $log);
ok(1, 'the would-be message is logged');
sleep 0.5;
my @s = sends($c);
is(scalar(@s), 1, 'only the real worker sent it');
push_stop('TERM', $pid);
--- tests: 2
--- perl_timeout: 90
--- no_error_log
[error]



=== TEST 12: an assertion signed by another key gets no access token, and nothing is sent
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
push_stop('TERM');
push_start(credentials => dir() . "/bad-sa.json");
my $c = conversation('alice', 'direct', 'pia');
device('pia', 'tok-pia', 'android');
produce(['alice', $c, 'x']);
push_wait_log(qr/cannot get an access token/, 10);
my @t = tokens_requested();
ok(@t && !$t[0]{jwt_ok} && $t[0]{jwt_error} =~ /signature/,
   'the fake server refused the signature');
is(scalar(sends($c)), 0, 'nothing sent');
push_stop('KILL');
--- tests: 2
--- perl_timeout: 90



=== TEST 13: a real STOMP session makes its user online for the worker; after it ends, pushes resume
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
my $c = conversation('alice', 'direct', 'quinn');
device('quinn', 'tok-quinn', 'android');
my $q = stomp_connect('/ws/chat', user => 'quinn');
sleep 0.3;
produce(['alice', $c, 'while connected']);
push_wait_log(qr/quinn is online: no push for \Q$c\E/, 10);
sleep 1.5;
is(scalar(sends($c)), 0, 'no push while the session lives');
$q->close;
undef $q;
sleep 0.5;
produce(['alice', $c, 'after disconnect']);
my @s = wait_sends($c, 1, 10);
is(scalar(@s), 1, 'pushed once the session ended');
--- tests: 2
--- no_error_log
[error]



=== TEST 14: changes of a message (edits, reactions, deletes; PROTOCOL.md section 10) are neither pushed nor counted
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
fcm_reset();
display_name('alice', 'Alice');
my $c = conversation('alice', 'direct', 'olga');
device('olga', 'tok-olga', 'android');
produce(['alice', $c, 'hello']);
my @s = wait_sends($c, 1, 10);
is(scalar(@s), 1, 'the message: a notification');
produce_changes('alice', $c, 1, ['message.edited', content => 'hello!'],
                ['reaction.added', emoji => 'x'], ['message.deleted']);
produce(['alice', $c, 'again']);
@s = wait_sends($c, 2, 10);
sleep 1.5;
@s = sends($c);
is(scalar(@s), 2, 'the changes made no notification of their own');
my $m = $s[1]{body}{message};
my $first = $s[0]{body}{message}{data}{seq};
is("$m->{data}{count} $m->{data}{seq}", '1 ' . ($first + 4),
   'the next one counts its one message, not the three changes');
--- tests: 3
--- no_error_log
[error]
