# Metrics: the chat_metrics location (Prometheus text, summed over the
# workers through shared memory) and the persistence worker's /metrics.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(more => <<'_EOC_');
    location = /metrics {
        chat_metrics;
    }
_EOC_

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);

my $label = qr/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"/;
my $sample = qr/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{$label(?:,$label)*\})?
                 \ (-?[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|[+-]Inf|NaN)$/x;

# the lines that are not a comment or "name{labels} value", and the
# samples whose family was not declared by a TYPE line before
sub bad_lines {
    my ($text) = @_;
    my (@bad, %typed);
    for my $l (split /\n/, $text) {
        if ($l =~ /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/) {
            $typed{$1} = $2;
            next;
        }
        next if $l =~ /^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* /;
        if ($l !~ $sample) {
            push @bad, $l;
            next;
        }
        my $fam = $1;
        $fam =~ s/_(bucket|sum|count)$// unless $typed{$fam};
        push @bad, "untyped: $l" unless $typed{$fam};
    }
    return @bad;
}

# the families that break Prometheus' naming conventions: a counter not
# ending in _total, a unit other than the base one (seconds, bytes)
sub unconventional {
    my ($text) = @_;
    my @bad;
    for my $l (split /\n/, $text) {
        next unless $l =~ /^# TYPE (\S+) (\S+)$/;
        my ($name, $type) = ($1, $2);
        push @bad, "$name: a counter without _total"
            if $type eq 'counter' && $name !~ /_total$/;
        push @bad, "$name: not in seconds or bytes"
            if $name =~ /_(ms|us|msec|usec|millis|milliseconds|microseconds|
                           minutes|hours|kb|kib|mb|mib)(_|$)/x;
        push @bad, "$name: a _total that is not a counter"
            if $type ne 'counter' && $name =~ /_total$/;
    }
    return @bad;
}

# a histogram's _sum cannot pass what its buckets allow: each observation
# at most its bucket's bound (the +Inf bucket: no bound, undef)
sub hist_sum_bound {
    my ($m, $name, $label) = @_;
    my $l = defined $label ? "$label," : '';
    my ($bound, $prev) = (0, 0);
    my @le = sort { $a <=> $b }
             map { /^\Q${name}\E_bucket\{\Q$l\Ele="([^"+]+)"\}$/ ? $1 : () }
             keys %$m;
    for my $le (@le) {
        my $cum = $m->{"${name}_bucket{${l}le=\"$le\"}"};
        $bound += ($cum - $prev) * $le;
        $prev = $cum;
    }
    return undef if $m->{"${name}_bucket{${l}le=\"+Inf\"}"} != $prev;
    return $bound;
}

# GET a metrics page: (status, \%headers, body, \%samples by "name{labels}")
sub scrape {
    my (%o) = @_;
    my ($st, $h, $body) = http_request('GET', $o{path} // '/metrics', [],
                                       undef, %o);
    my %m;
    for my $l (split /\n/, $body // '') {
        next if $l =~ /^#/;
        $m{"$1" . ($2 // '')} = $3 if $l =~ $sample;
    }
    return ($st, $h, $body, \%m);
}

sub metrics { (scrape(@_))[3] }

# waits until the check on a fresh scrape is true; the last scrape
sub wait_metrics {
    my ($check, $secs) = @_;
    my $m;
    my $until = time + $secs;
    while (1) {
        $m = metrics();
        return $m if $check->($m) || time > $until;
        sleep 0.1;
    }
}

sub delta {
    my ($before, $after, $name) = @_;
    return ($after->{$name} // 0) - ($before->{$name} // 0);
}

# every frame a client gets within the time: (count, MESSAGE count on
# /user/queue/messages, error codes, receipt ids)
sub drain {
    my ($c, $secs) = @_;
    my ($n, $msgs, @codes, %r) = (0, 0);
    my $until = time + $secs;
    while (time < $until) {
        my $f = $c->stomp_recv(0.2) or next;
        $n++;
        $r{ $f->{headers}{'receipt-id'} } = 1 if $f->{command} eq 'RECEIPT';
        next unless $f->{command} eq 'MESSAGE';
        $msgs++ if $f->{headers}{destination} eq '/user/queue/messages';
        push @codes, json_decode($f->{body})->{code}
            if $f->{headers}{destination} eq '/user/queue/errors';
    }
    return ($n, $msgs, \@codes, \%r);
}

# a persistence worker with its metrics on a free port: (pid, port)
sub start_metered {
    my $port = free_port();
    my $pid = start_persist('--group-id=t065',
                            "--metrics-listen=127.0.0.1:$port");
    return ($pid, $port);
}

package main;

run_tests();

__DATA__

=== TEST 1: chat_metrics answers in the Prometheus text format
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 10
--- perl
my ($st, $h, $body, $m) = scrape();
is($st, 200, "status 200");
is($h->{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   'Content-Type of the exposition format 0.0.4');
my @bad = bad_lines($body);
is(scalar(@bad), 0, 'every line is a comment or name{labels} value')
    or diag(join("\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]));
is($m->{ngx_chat_workers}, 1, 'one worker');
my @missing = grep { !exists $m->{$_} } qw(
    ngx_chat_connections ngx_chat_sessions ngx_chat_subscriptions
    ngx_chat_frames_in_total ngx_chat_frames_out_total
    ngx_chat_messages_in_total ngx_chat_messages_out_total
    ngx_chat_kafka_queue_depth ngx_chat_send_publish_seconds_count
    ngx_chat_send_publish_seconds_sum),
    map({ ("ngx_chat_errors_total{code=\"$_\"}") }
        qw(bad_request not_member not_found too_large rate_limited
           unavailable protocol)),
    map({ ("ngx_chat_link_up{link=\"$_\"}",
           "ngx_chat_link_last_rtt_seconds{link=\"$_\"}",
           "ngx_chat_link_rtt_seconds_count{link=\"$_\"}") }
        qw(redis postgresql kafka));
is("@missing", '', 'every series is there');
my @unconv = unconventional($body);
is("@unconv", '', 'counters end in _total, durations are in seconds');
my @le = map { /le="([^"]+)"/ ? $1 : () }
         grep { /^ngx_chat_send_publish_seconds_bucket/ } split /\n/, $body;
is("@le", '0.0001 0.00025 0.0005 0.001 0.002 0.005 0.01 0.025 0.05 0.1 '
          . '0.25 0.5 1 2.5 5 +Inf',
   'latency buckets in seconds');
$m = wait_metrics(sub { $_[0]{'ngx_chat_link_up{link="redis"}'}
                        && $_[0]{'ngx_chat_link_up{link="postgresql"}'} }, 5);
is($m->{'ngx_chat_link_up{link="redis"}'}, 1, 'the Redis link is up');
is($m->{'ngx_chat_link_up{link="postgresql"}'}, 1,
   'the PostgreSQL link is up');
($st) = http_request('POST', '/metrics', [], 'x');
is($st, 405, 'POST: 405');
--- no_error_log
[error]



=== TEST 2: two workers: sessions, messages and a rejection move the sums exactly
--- need_module
--- workers: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 23
--- perl_timeout: 60
--- perl
my $b0 = wait_metrics(sub { ($_[0]{ngx_chat_workers} // 0) == 2
                            && $_[0]{'ngx_chat_link_up{link="redis"}'} == 2 },
                      5);
is($b0->{ngx_chat_workers}, 2, 'two workers');
is($b0->{'ngx_chat_link_up{link="redis"}'}, 2,
   'both workers have a Redis link');
my ($st, $conv) = api(POST => '/conversations', 'malice',
                      { type => 'direct', members => ['mbob'] });
$conv = $conv->{conversationId};
my $before = metrics();
my $alice = member('malice');
my $bob = member('mbob');
my $carol = member('mcarol');
my $mid = metrics();
is(delta($before, $mid, 'ngx_chat_connections'), 3, 'connections +3');
is(delta($before, $mid, 'ngx_chat_connections_total'), 3,
   'connections_total +3');
is(delta($before, $mid, 'ngx_chat_sessions'), 3, 'sessions +3');
is(delta($before, $mid, 'ngx_chat_subscriptions'), 6, 'subscriptions +6');
for my $i (1 .. 3) {
    $alice->send_json('/app/chat.send',
                      { conversationId => $conv, content => "m$i",
                        clientMsgId => "m$i" }, receipt => "r$i");
}
$carol->send_json('/app/chat.send',
                  { conversationId => $conv, content => 'intruder',
                    clientMsgId => 'x1' });
my ($na, $ma, undef, $ra) = drain($alice, 1.5);
my ($nb, $mb) = drain($bob, 0.3);
my ($nc, undef, $codes) = drain($carol, 0.3);
is(join(',', sort keys %$ra), 'r1,r2,r3', 'alice has her receipts');
is($mb, 3, 'bob got the messages');
is("@$codes", 'not_member', 'carol was rejected');
my $after = metrics();
is(delta($before, $after, 'ngx_chat_messages_in_total'), 3,
   'messages_in +3 (the rejected one is not)');
is(delta($before, $after, 'ngx_chat_messages_out_total'), $ma + $mb,
   "messages_out +@{[ $ma + $mb ]} (every MESSAGE on /user/queue/messages)");
is(delta($before, $after, 'ngx_chat_errors_total{code="not_member"}'), 1,
   'errors{not_member} +1');
is(delta($before, $after, 'ngx_chat_errors_total{code="protocol"}'), 0,
   'no ERROR frame');
# CONNECT, 2 SUBSCRIBE each; 3 SENDs of alice, 1 of carol
is(delta($before, $after, 'ngx_chat_frames_in_total'), 3 * 3 + 3 + 1,
   'frames_in: every frame the clients sent');
# CONNECTED and 2 RECEIPTs each, and what they drained
is(delta($before, $after, 'ngx_chat_frames_out_total'),
   3 * 3 + $na + $nb + $nc, 'frames_out: every frame the clients got');
is(delta($before, $after, 'ngx_chat_send_publish_seconds_count'), 3,
   'SEND-to-publish latency: 3 observations');
is(delta($before, $after, 'ngx_chat_send_publish_seconds_bucket{le="+Inf"}'),
   3, 'its +Inf bucket agrees');
ok(delta($before, $after, 'ngx_chat_link_rtt_seconds_count{link="redis"}')
   >= 4, 'Redis round trips measured');
# a sum in another unit than the bounds (ms in a seconds histogram) passes
# them 1000 times
my $bound = hist_sum_bound($after, 'ngx_chat_send_publish_seconds');
ok(defined $bound && $after->{ngx_chat_send_publish_seconds_sum} > 0
   && $after->{ngx_chat_send_publish_seconds_sum} <= $bound,
   "SEND-to-publish sum in the buckets' unit "
   . "($after->{ngx_chat_send_publish_seconds_sum} <= @{[ $bound // 'undef' ]})");
$bound = hist_sum_bound($after, 'ngx_chat_link_rtt_seconds', 'link="redis"');
ok(defined $bound
   && $after->{'ngx_chat_link_rtt_seconds_sum{link="redis"}'} <= $bound
   && $after->{'ngx_chat_link_last_rtt_seconds{link="redis"}'} < 1,
   'Redis round trips in seconds, the last one too');
$carol->send_text("BOGUS\n\n\0");
$carol->expect_close(3);
$after = wait_metrics(sub { delta($before, $_[0],
                                  'ngx_chat_errors_total{code="protocol"}') }, 3);
is(delta($before, $after, 'ngx_chat_errors_total{code="protocol"}'), 1,
   'a protocol ERROR frame counted');
$alice->disconnect_tcp;
$bob->close(1000);
$after = wait_metrics(sub { delta($before, $_[0], 'ngx_chat_connections') == 0
                            && delta($before, $_[0], 'ngx_chat_sessions') == 0 },
                      5);
is(delta($before, $after, 'ngx_chat_connections') . ' '
   . delta($before, $after, 'ngx_chat_sessions') . ' '
   . delta($before, $after, 'ngx_chat_subscriptions'), '0 0 0',
   'gauges back where they were once the clients left');
is(scalar(bad_lines((scrape())[2])), 0, 'still well formed');
--- no_error_log
[error]



=== TEST 3: chat-persist serves its own /metrics: rows written, batches, lag
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 10
--- perl_timeout: 60
--- perl
my ($pid, $port) = start_metered();
ok(wait_port($port, 10), 'the metrics port listens');
my ($st, $h, $body, $m) = scrape(port => $port);
is($st, 200, "status 200");
like($h->{'content-type'} // '', qr{^text/plain; version=0\.0\.4},
     'Content-Type');
my @bad = bad_lines($body);
is(scalar(@bad), 0, 'every line is a comment or name{labels} value')
    or diag(join("\n", @bad));
my @unconv = unconventional($body);
is("@unconv", '', 'counters end in _total, durations are in seconds');
my $c0 = $m->{chat_persist_rows_written_total};
ok(defined $c0 && exists $m->{chat_persist_lag_messages}
   && exists $m->{chat_persist_errors_total}
   && exists $m->{chat_persist_retries_total}
   && exists $m->{chat_persist_batches_total},
   'rows written, lag, errors, retries, batches');
my (undef, $conv) = api(POST => '/conversations', 'palice',
                        { type => 'direct', members => ['pbob'] });
$conv = $conv->{conversationId};
my $a = member('palice');
$a->send_json('/app/chat.send', { conversationId => $conv, content => "p$_",
                                  clientMsgId => "p$_" }) for 1 .. 2;
my $until = time + 30;
my $rows = 0;
while (time < $until) {
    $rows = (pg_query("SELECT count(*) FROM messages"
                      . " WHERE conversation_id = '$conv'"))[0][0];
    last if $rows >= 2;
    sleep 0.25;
}
$m = (scrape(port => $port))[3];
ok($m->{chat_persist_rows_written_total} - $c0 >= 2
   && $m->{chat_persist_batches_total} >= 1,
   "rows_written moved by at least 2 ($c0 -> "
   . "$m->{chat_persist_rows_written_total})");
like(join("\n", grep { /^chat_persist_last_batch_seconds / }
                  split /\n/, (scrape(port => $port))[2]),
     qr/^chat_persist_last_batch_seconds [0-9]+\.[0-9]{3}$/,
     'the last batch took a time in seconds (milliseconds as decimals)');
($st) = scrape(port => $port, path => '/other');
is($st, 404, 'another path: 404');
kill 'TERM', $pid;
waitpid($pid, 0);
is($? >> 8, 0, 'the worker stops cleanly with its metrics thread');
--- no_error_log
[error]
