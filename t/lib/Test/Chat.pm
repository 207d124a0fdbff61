# Test::Chat: data-driven nginx tests for ngx_chat_module (Test::Base
# blocks, Test::Nginx style), with Redis, PostgreSQL and nginx management.
# The sections, environment variables and helpers: t/lib/README.md.

package Test::Chat;

use strict;
use warnings;

use Test::Base;
require Exporter;
use Cwd qw(abs_path getcwd);
use File::Basename qw(dirname basename);
use File::Path qw(make_path remove_tree);
use POSIX ();
use Time::HiRes qw(time sleep);

use Test::Chat::Util;
use Test::Chat::WebSocket;

our @EXPORT = (
    @Test::Base::EXPORT,
    qw(run_tests plan_from_blocks block_checks repeat_each
       ensure_stores error_log_since_block wait_for_log
       nginx_reload nginx_signal nginx_pid nginx_restart nginx_t servroot
       redis_stop redis_start pg_stop pg_start),
    @Test::Chat::Util::EXPORT,
    @Test::Chat::WebSocket::EXPORT,
);

sub import {
    my $class = shift;
    local $Exporter::ExportLevel = 1;
    Exporter::import($class, @_);
}

# the checkout: t/lib/Test/Chat.pm -> ../../..
our $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/../../..');

our $REPEAT = 1;
our $NO_MODULE = $ENV{TEST_NGINX_NO_MODULE} ? 1 : 0;
our $BINARY = $ENV{TEST_NGINX_BINARY}
              // (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
our $MODULE = $ENV{TEST_NGINX_MODULE}
              // "$ROOT/build/nginx/objs/ngx_chat_module.so";
our $LOG_LEVEL = $ENV{TEST_NGINX_LOG_LEVEL} // 'debug';
our $SERVROOT_BASE = $ENV{TEST_NGINX_SERVROOT_BASE} // "$ROOT/t/servroot";

my $test_name = basename($0, '.t');
$test_name =~ s/[^\w.-]/_/g;
my $servroot = "$SERVROOT_BASE/$test_name";

# two runs of one file at once (several people in one checkout) get
# separate directories: the second one adds its pid
our $SERVROOT_LOCK;   # held while the file runs (a global: never freed)
{
    use Fcntl qw(:flock);
    make_path($SERVROOT_BASE);
    if (open($SERVROOT_LOCK, '>', "$servroot.lock")
        && !flock($SERVROOT_LOCK, LOCK_EX | LOCK_NB))
    {
        $servroot .= ".$$";
        open($SERVROOT_LOCK, '>', "$servroot.lock")
            && flock($SERVROOT_LOCK, LOCK_EX | LOCK_NB);
    }
}

my $stores_started;      # we started Redis/PostgreSQL for this file
my $stores_ready;
my %nginx;               # instance number -> { root, port, conf, pid }
my $nginx_user;
my $block_logs;          # instance -> log offset at the block's start

$ENV{TEST_NGINX_SERVER_PORT} ||= free_port();
$ENV{TEST_NGINX_SERVER_PORT2} ||= free_port();
$ENV{TEST_NGINX_JWT_SECRET} //= 'secret';
$ENV{TEST_NGINX_SERVROOT} = $servroot;


sub servroot { $servroot }

sub repeat_each {
    $REPEAT = $_[0] if @_;
    return $REPEAT;
}


# --- Redis and PostgreSQL ---

# makes sure Redis and PostgreSQL are there: the ones the environment
# names (make test starts one pair for the whole run), else our own
sub ensure_stores {
    return if $stores_ready;

    if ($ENV{TEST_NGINX_REDIS_PORT} && $ENV{TEST_NGINX_PG_PORT}) {
        $ENV{TEST_NGINX_PG_DSN} //= "host=127.0.0.1 "
            . "port=$ENV{TEST_NGINX_PG_PORT} dbname=chat user=chat";
        $stores_ready = 1;
        return;
    }

    my $dir = "$servroot/stores";
    make_path($dir);

    my $out = `"$ROOT/scripts/test-servers.sh" start "$dir"`;
    die "cannot start Redis and PostgreSQL (scripts/test-servers.sh)\n"
        if $?;

    $stores_started = $dir;

    for (split /\n/, $out) {
        $ENV{$1} = $2 if /^export (\w+)='?(.*?)'?$/;
    }

    $stores_ready = 1;
}


# outages: stop and start Redis or PostgreSQL (same port, same data)
sub _stores_ctl {
    my ($what) = @_;
    ensure_stores();
    my $dir = $ENV{TEST_NGINX_STORES_DIR}
        or die "$what: the stores were not started by test-servers.sh\n";
    system("$ROOT/scripts/test-servers.sh", $what, $dir) == 0
        or die "test-servers.sh $what failed\n";
    return 1;
}

sub redis_stop  { _stores_ctl('redis-stop') }
sub redis_start { _stores_ctl('redis-start') }
sub pg_stop     { _stores_ctl('pg-stop') }
sub pg_start    { _stores_ctl('pg-start') }


sub stop_stores {
    return unless $stores_started;
    system("$ROOT/scripts/test-servers.sh", 'stop', $stores_started);
    $stores_started = undef;
}


# --- nginx ---

sub _nginx_user {
    return $nginx_user if defined $nginx_user;

    if ($> != 0) {
        $nginx_user = '';
    } elsif (system("runuser -u nobody -- test -x '$servroot' "
                    . ">/dev/null 2>&1") == 0
             && getgrnam('nogroup'))
    {
        $nginx_user = 'user nobody nogroup;';
    } else {
        $nginx_user = 'user root;';
    }

    return $nginx_user;
}


# replaces $TEST_NGINX_* variables and ${token:USER} in a section
sub expand {
    my ($s) = @_;
    return $s unless defined $s;
    $s =~ s/\$(TEST_NGINX_\w+)/defined $ENV{$1} ? $ENV{$1} : "\$$1"/ge;
    $s =~ s/\$\{token:([^}]+)\}/make_token($1)/ge;
    return $s;
}


sub _section {
    my ($block, $name) = @_;
    return undef unless exists $block->{$name};
    my $v = $block->$name;
    return ref $v ? $v : expand($v);
}


sub _lines {
    my ($block, $name) = @_;
    my $v = _section($block, $name);
    return () unless defined $v;
    return ref $v eq 'ARRAY' ? @$v : grep { /\S/ } split /\n/, $v;
}


sub _count {
    my @l = _lines(@_);
    return scalar @l;
}


sub nginx_conf {
    my ($block, $n) = @_;
    my ($c, $port, $http);

    $port = $n == 1 ? $ENV{TEST_NGINX_SERVER_PORT}
                    : $ENV{TEST_NGINX_SERVER_PORT2};
    $http = _section($block, 'http_config') // '';

    $c = "# generated by t/lib/Test/Chat.pm for $0\n";
    $c .= "load_module $MODULE;\n" unless $NO_MODULE;
    $c .= _nginx_user() . "\n" if _nginx_user();
    $c .= "master_process on;\n"
        . "daemon on;\n"
        . "worker_processes " . (_has($block, 'workers') ? $block->workers : 1)
        . ";\n"
        . "error_log logs/error.log $LOG_LEVEL;\n"
        . "pid logs/nginx.pid;\n"
        . (_section($block, 'main_config') // '') . "\n"
        . "events {\n    worker_connections 1024;\n}\n"
        . "http {\n"
        . "    access_log off;\n"
        . "    default_type text/plain;\n"
        . "    client_body_temp_path client_body_temp;\n"
        . "    proxy_temp_path proxy_temp;\n"
        . "    fastcgi_temp_path fastcgi_temp;\n"
        . "    uwsgi_temp_path uwsgi_temp;\n"
        . "    scgi_temp_path scgi_temp;\n";

    if (!$NO_MODULE && !exists $block->{no_chat_stores}) {
        $c .= "    chat_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};\n"
            . "    chat_postgres \"$ENV{TEST_NGINX_PG_DSN}\";\n";

        # every message goes through Kafka, as in production, unless the
        # block says no_kafka (or brings its own chat_kafka)
        if ($ENV{TEST_NGINX_KAFKA_BROKERS} && !exists $block->{no_kafka}
            && $http !~ /\bchat_kafka\s/)
        {
            $c .= "    chat_kafka $ENV{TEST_NGINX_KAFKA_BROKERS};\n";
        }
    }

    if (!$NO_MODULE && $n == 2 && $http !~ /\bchat_node_id\b/) {
        $c .= "    chat_node_id 2;\n";
    }

    $c .= "$http\n"
        . "    server {\n"
        . "        listen 127.0.0.1:$port;\n"
        . "        server_name localhost;\n"
        . (_section($block, 'config') // '') . "\n"
        . "    }\n"
        . "}\n";

    return $c;
}


sub _root {
    my ($n) = @_;
    return $n == 1 ? "$servroot/nginx" : "$servroot/nginx$n";
}


sub _read_pid {
    my ($root) = @_;
    open(my $fh, '<', "$root/logs/nginx.pid") or return undef;
    my $pid = <$fh>;
    return undef unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}


sub nginx_pid {
    my ($n) = @_;
    return _read_pid(_root($n // 1));
}


# a zombie (exited, not reaped yet by init) counts as dead
sub _alive {
    my ($pid) = @_;

    return 0 unless $pid && kill(0, $pid);
    open(my $fh, '<', "/proc/$pid/stat") or return 1;
    my $stat = <$fh> // return 1;
    return $stat =~ /^\d+ \(.*\) Z/ ? 0 : 1;
}


sub nginx_stop {
    my ($n, $sig) = @_;
    my $root = _root($n);
    my $pid = _read_pid($root);

    delete $nginx{$n};
    return unless _alive($pid);

    kill($sig // 'TERM', $pid);

    my $until = time + 10;
    while (_alive($pid) && time < $until) {
        sleep 0.02;
    }

    if (_alive($pid)) {
        Test::More::diag("nginx $pid did not stop, killing it");
        kill 'KILL', $pid;
        # the workers die with their master's KILL? no: kill the group
        kill 'KILL', -$pid;
        sleep 0.1;
    }

    unlink "$root/logs/nginx.pid";
}


sub _log_size {
    my ($n) = @_;
    return -s (_root($n) . "/logs/error.log") // 0;
}


sub _log_tail {
    my ($n, $lines) = @_;
    my $f = _root($n) . "/logs/error.log";
    return `tail -n $lines '$f' 2>/dev/null` // '';
}


# nginx_start(n, conf) -> (ok, message)
sub nginx_start {
    my ($n, $conf) = @_;
    my $root = _root($n);

    make_path("$root/conf", "$root/logs");

    open(my $fh, '>', "$root/conf/nginx.conf") or die "$root: $!\n";
    print $fh $conf;
    close $fh;

    my $port = $n == 1 ? $ENV{TEST_NGINX_SERVER_PORT}
                       : $ENV{TEST_NGINX_SERVER_PORT2};

    my $cmd = "'$BINARY' -p '$root/' -c conf/nginx.conf -e logs/error.log"
            . " > '$root/logs/start.log' 2>&1";

    if (system($cmd) != 0) {
        my $out = `cat '$root/logs/start.log'`;
        return (0, "nginx failed to start:\n$out");
    }

    unless (wait_port($port, 10)) {
        return (0, "nginx is not listening on $port:\n" . _log_tail($n, 30));
    }

    $nginx{$n} = { conf => $conf, pid => _read_pid($root) };

    return (1, '');
}


# nginx_t(block): writes the block's configuration (as nginx_conf) to
# <servroot>/nginx-t/conf/nginx.conf and runs "nginx -t" on it; starts
# nothing. Returns (exit status, output, the configuration file's path,
# the configuration's text).
sub nginx_t {
    my ($block) = @_;
    my $root = "$servroot/nginx-t";

    make_path("$root/conf", "$root/logs");

    # stores are never contacted by -t: any address will do
    local $ENV{TEST_NGINX_REDIS_PORT} = $ENV{TEST_NGINX_REDIS_PORT} || 6379;
    local $ENV{TEST_NGINX_PG_DSN} = $ENV{TEST_NGINX_PG_DSN}
                                    || 'host=127.0.0.1 dbname=chat';

    my $conf = nginx_conf($block, 1);
    my $file = "$root/conf/nginx.conf";

    open(my $fh, '>', $file) or die "$file: $!\n";
    print $fh $conf;
    close $fh;

    my $out = `'$BINARY' -t -p '$root/' -c conf/nginx.conf -e logs/error.log 2>&1`;

    return ($? >> 8, $out, $file, $conf);
}


# nginx_restart(n, signal): stops nginx n (TERM; QUIT for a graceful stop)
# and starts it again with the same configuration
sub nginx_restart {
    my ($n, $sig) = @_;
    $n //= 1;
    my $conf = $nginx{$n} ? $nginx{$n}{conf} : undef;

    die "nginx $n is not running\n" unless defined $conf;

    nginx_stop($n, $sig);
    my ($ok, $msg) = nginx_start($n, $conf);
    die "$msg\n" unless $ok;
    return 1;
}


sub nginx_signal {
    my ($sig, $n) = @_;
    my $pid = nginx_pid($n // 1);
    return $pid ? kill($sig, $pid) : 0;
}


# nginx_reload(n): HUP and wait until the old workers are gone
sub nginx_reload {
    my ($n) = @_;
    $n //= 1;
    my $pid = nginx_pid($n) or return 0;
    my @old = _workers($pid);

    kill 'HUP', $pid;

    my $until = time + 10;
    while (time < $until) {
        my @now = _workers($pid);
        my %old = map { $_ => 1 } @old;
        last if @now && !grep { $old{$_} } @now;
        sleep 0.05;
    }

    return 1;
}


sub _workers {
    my ($ppid) = @_;
    my @w;

    opendir(my $d, '/proc') or return ();
    for my $p (grep /^\d+$/, readdir $d) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $stat = <$fh> // next;
        my ($pp) = $stat =~ /^\d+ \(.*\) \S (\d+)/ or next;
        push @w, $p if $pp == $ppid;
    }

    return @w;
}


# the error log text written since the current block started (all nginx
# instances of the block)
sub error_log_since_block {
    my $text = '';

    for my $n (sort keys %{ $block_logs || {} }) {
        my $f = _root($n) . "/logs/error.log";
        open(my $fh, '<', $f) or next;
        seek($fh, $block_logs->{$n}, 0);
        local $/;
        $text .= <$fh> // '';
    }

    return $text;
}


# wait_for_log(pattern (string or qr//), timeout) -> true once it shows up
sub wait_for_log {
    my ($pat, $timeout) = @_;
    my $until = time + ($timeout // 3);

    while (1) {
        my $log = error_log_since_block();
        return 1 if ref $pat ? $log =~ $pat : index($log, $pat) >= 0;
        return 0 if time >= $until;
        sleep 0.05;
    }
}


# --- the plan ---

sub _has { exists $_[0]->{$_[1]} }

sub _request_checks {
    my ($block) = @_;
    my $n = 0;

    if (_has($block, 'request') || _has($block, 'raw_request')) {
        $n++;    # error_code (200 by default)
        $n++ if _has($block, 'response_body');
        $n++ if _has($block, 'response_body_like');
        $n++ if _has($block, 'response_body_unlike');
        $n += _count($block, 'response_headers');
    }

    return $n;
}


# how many checks a block makes
sub block_checks {
    my ($block) = @_;
    my $n = 1;    # nginx came up (or died as asked) and no worker crashed

    if (_has($block, 'must_die')) {
        return $n + _count($block, 'error_log')
                  + _count($block, 'no_error_log');
    }

    $n += _request_checks($block);

    $n += $block->tests if _has($block, 'tests') && $block->tests =~ /\d/;
    $n += _count($block, 'error_log');
    $n += _count($block, 'no_error_log');

    return $n;
}


sub plan_from_blocks {
    my $n = 0;
    $n += block_checks($_) for blocks();
    plan(tests => $n * $REPEAT);
    return $n * $REPEAT;
}


# --- running ---

sub _fail_rest {
    my ($count, $why, $block) = @_;
    my $name = $block->name;

    for (1 .. $count) {
        fail("$name - $why");
    }
}


sub _pattern {
    my ($line) = @_;
    return $line if ref $line;
    return qr/$1/ if $line =~ m{^qr/(.*)/$};
    return $line;
}


sub _check_logs {
    my ($block) = @_;
    my $name = $block->name;
    my @want = _lines($block, 'error_log');
    my @not = _lines($block, 'no_error_log');

    return unless @want || @not;

    # lines may be written after the response went out
    my $until = time + (_has($block, 'log_timeout') ? $block->log_timeout
                                                    : 2);
    for my $w (@want) {
        my $p = _pattern($w);
        while (time < $until) {
            my $log = error_log_since_block();
            last if ref $p ? $log =~ $p : index($log, $p) >= 0;
            sleep 0.05;
        }
    }

    sleep($ENV{TEST_NGINX_LOG_WAIT} // 0.1) if @not;

    my $log = error_log_since_block();

    for my $w (@want) {
        my $p = _pattern($w);
        ok(ref $p ? $log =~ $p : index($log, $p) >= 0,
           "$name - error_log has: $w");
    }

    for my $w (@not) {
        my $p = _pattern($w);
        my ($hit) = grep { ref $p ? /$p/ : index($_, $p) >= 0 }
                    split /\n/, $log;
        ok(!defined $hit, "$name - error_log lacks: $w")
            or diag("found: $hit");
    }
}


sub _do_request {
    my ($block) = @_;
    my ($st, $h, $body, $name, $timeout, @hl, $req, $rbody, $raw);

    $name = $block->name;
    $timeout = _has($block, 'timeout') ? $block->timeout : 5;

    if (_has($block, 'raw_request')) {
        $raw = _section($block, 'raw_request');
        ($st, $h, $body) = http_request(undef, undef, undef, undef,
                                        raw => $raw, timeout => $timeout);
    } else {
        $req = _section($block, 'request');
        my ($line, $rest) = split /\n/, $req, 2;
        $line =~ s/\s+$//;
        my ($method, $uri) = split /\s+/, $line;

        if (_has($block, 'request_body')) {
            $rbody = _section($block, 'request_body');
            chomp $rbody;
        } elsif (defined $rest && $rest =~ /\S/) {
            $rest =~ s/\A\n//;
            chomp $rest;
            $rbody = $rest;
        }

        @hl = _lines($block, 'more_headers');
        ($st, $h, $body) = http_request($method, $uri, \@hl, $rbody,
                                        timeout => $timeout);
    }

    my $want = _has($block, 'error_code') ? $block->error_code : 200;
    is($st, $want, "$name - status code")
        or diag("response body: " . ($body // ''));

    for my $l (_lines($block, 'response_headers')) {
        if ($l =~ /^!\s*(\S+)/) {
            ok(!exists $h->{ lc $1 }, "$name - no header $1");
        } elsif ($l =~ /^([^:]+):\s*~\s*(.*)$/) {
            like($h->{ lc $1 } // '', qr/$2/, "$name - header $1 like");
        } elsif ($l =~ /^([^:]+):\s*(.*)$/) {
            is($h->{ lc $1 }, $2, "$name - header $1");
        } else {
            fail("$name - bad response_headers line: $l");
        }
    }

    if (_has($block, 'response_body')) {
        is($body, _section($block, 'response_body'),
           "$name - response body");
    }

    if (_has($block, 'response_body_like')) {
        my $p = _section($block, 'response_body_like');
        $p =~ s/\n\z//;
        like($body // '', qr/$p/s, "$name - response body like");
    }

    if (_has($block, 'response_body_unlike')) {
        my $p = _section($block, 'response_body_unlike');
        $p =~ s/\n\z//;
        unlike($body // '', qr/$p/s, "$name - response body unlike");
    }
}


sub _run_perl {
    my ($block, $code) = @_;
    my $name = $block->name;
    my $want = _has($block, 'tests') ? $block->tests + 0 : 0;
    my $tb = Test::More->builder;
    my $before = $tb->current_test;
    my $secs = _has($block, 'perl_timeout') ? $block->perl_timeout : 60;

    my $sub = eval "package Test::Chat::Sandbox;\n"
                 . "use strict; use warnings;\n"
                 . "BEGIN { Test::Chat->import }\n"
                 . "sub {\n my (\$block) = \@_;\n"
                 . "#line 1 \"$name (perl)\"\n$code\n}\n";

    my $err;
    if (!$sub) {
        $err = "does not compile: $@";
    } else {
        local $SIG{ALRM} = sub { die "timed out after ${secs}s\n" };
        alarm $secs;
        eval { $sub->($block); 1 } or $err = $@ || 'died';
        alarm 0;
    }

    my $ran = $tb->current_test - $before;

    if ($err) {
        chomp $err;
        if ($ran < $want) {
            fail("$name - perl: $err");
            $ran++;
        } else {
            diag("$name - perl: $err");
        }
    }

    if ($ran < $want) {
        _fail_rest($want - $ran, "perl block ran $ran of $want tests",
                   $block);
    }
}


sub _run_init {
    my ($block) = @_;

    if (_has($block, 'init')) {
        my $code = $block->init;
        my $ok = eval "package Test::Chat::Sandbox;\n"
                    . "use strict; use warnings;\n"
                    . "BEGIN { Test::Chat->import }\n"
                    . "#line 1 \"" . $block->name . " (init)\"\n"
                    . "$code\n; 1";
        die "init failed: $@" unless $ok;
    }

    if (_has($block, 'init_sh')) {
        my $sh = _section($block, 'init_sh');
        system('bash', '-ec', $sh) == 0
            or die "init_sh failed: exit " . ($? >> 8) . "\n";
    }
}


sub _crash_check {
    my ($block, $started_ok) = @_;
    my $log = error_log_since_block();
    my @bad = grep { /exited on signal|\[alert\]|\[emerg\]/
                     && !/could not open error log file/ }
              split /\n/, $log;

    if (_has($block, 'must_die')) {
        ok(!$started_ok, $block->name . " - nginx refused to start");
        return;
    }

    # [emerg]/[alert] are allowed when the block asks for them
    my @want = map { _pattern($_) } _lines($block, 'error_log');
    @bad = grep {
        my $l = $_;
        !/\[(alert|emerg)\]/ || !grep { ref $_ ? $l =~ $_
                                               : index($l, $_) >= 0 } @want
    } @bad;
    @bad = grep { /exited on signal/ } @bad if _has($block, 'allow_alerts');

    ok(!@bad, $block->name . " - no crash, alert or emerg in error.log")
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}


sub _run_block {
    my ($block) = @_;
    my ($name, @inst, $ok, $msg);

    $name = $block->name;

    if (_has($block, 'need_module') && $NO_MODULE) {
        SKIP: { skip("$name: needs the module", block_checks($block)) }
        return;
    }

    if (_has($block, 'skip')) {
        SKIP: { skip("$name: " . ($block->skip || 'skipped'),
                     block_checks($block)) }
        return;
    }

    @inst = (1);
    push @inst, 2 if _has($block, 'second_server');

    # stop instances this block does not want or whose config changed
    for my $n (1, 2) {
        my $conf = (grep { $_ == $n } @inst) ? nginx_conf($block, $n) : '';
        if ($nginx{$n} && ($nginx{$n}{conf} ne $conf
                           || _has($block, 'restart')
                           || _has($block, 'must_die')))
        {
            nginx_stop($n);
        }
    }

    eval { _run_init($block); 1 } or do {
        my $e = $@;
        chomp $e;
        _fail_rest(block_checks($block), $e, $block);
        return;
    };

    $block_logs = { map { $_ => _log_size($_) } @inst };

    ($ok, $msg) = (1, '');
    for my $n (@inst) {
        next if $nginx{$n} && _alive($nginx{$n}{pid});
        ($ok, $msg) = nginx_start($n, nginx_conf($block, $n));
        last unless $ok;
    }

    if (_has($block, 'must_die')) {
        if ($ok) {
            diag("$name - nginx started but must_die was set");
            nginx_stop($_) for @inst;
        }
        $msg =~ s/\s+\z//;
        _check_logs_text($block, $msg);
        _crash_check($block, $ok);
        return;
    }

    unless ($ok) {
        diag($msg);
        diag("config:\n" . nginx_conf($block, 1)) if $ENV{TEST_VERBOSE};
        _fail_rest(block_checks($block), 'nginx did not start', $block);
        return;
    }

    if (_has($block, 'request') || _has($block, 'raw_request')) {
        my $tb = Test::More->builder;
        my $before = $tb->current_test;
        my $want = _request_checks($block);
        eval { _do_request($block); 1 } or do {
            my $e = $@;
            chomp $e;
            my $left = $want - ($tb->current_test - $before);
            _fail_rest($left > 0 ? $left : 0, "request: $e", $block);
        };
    }

    if (_has($block, 'perl')) {
        _run_perl($block, $block->perl);
    }

    if (_has($block, 'wait')) {
        sleep($block->wait);
    }

    _check_logs($block);
    _crash_check($block, 1);
}


# must_die blocks: the startup output counts as the log too
sub _check_logs_text {
    my ($block, $extra) = @_;
    my $name = $block->name;
    my $log = error_log_since_block() . "\n" . ($extra // '');

    for my $w (_lines($block, 'error_log')) {
        my $p = _pattern($w);
        ok(ref $p ? $log =~ $p : index($log, $p) >= 0,
           "$name - error_log has: $w")
            or diag("log:\n$log");
    }

    for my $w (_lines($block, 'no_error_log')) {
        my $p = _pattern($w);
        ok(ref $p ? $log !~ $p : index($log, $p) < 0,
           "$name - error_log lacks: $w");
    }
}


sub run_tests {
    my @blocks = blocks();

    unless (-x $BINARY || `which '$BINARY' 2>/dev/null`) {
        BAIL_OUT("nginx binary $BINARY not found (TEST_NGINX_BINARY)");
    }

    if (!$NO_MODULE && !-f $MODULE) {
        BAIL_OUT("$MODULE not found: run make (or set TEST_NGINX_MODULE,"
                 . " or TEST_NGINX_NO_MODULE=1 for module-free tests)");
    }

    make_path($servroot);

    # an nginx left behind by an earlier run that was killed (the lock
    # says no other run uses this directory now)
    for my $n (1, 2) {
        nginx_stop($n) if -f _root($n) . "/logs/nginx.pid";
    }

    unless ($NO_MODULE) {
        ensure_stores();
        redis_flushall();
        reset_db();
    }

    for my $r (1 .. $REPEAT) {
        for my $block (@blocks) {
            _run_block($block);
        }
    }

    nginx_stop($_) for keys %nginx;
}


# stop everything on exit, also on Ctrl-C; a closed socket or output pipe
# is an error to report, not a reason to die without cleaning up
$SIG{INT} = $SIG{TERM} = sub { exit 130 };
$SIG{PIPE} = 'IGNORE';

# forked children (helpers in perl blocks) must not stop anything
my $owner_pid = $$;

END {
    return unless $$ == $owner_pid;
    my $rc = $?;
    for my $n (1, 2) {
        nginx_stop($n) if -f _root($n) . "/logs/nginx.pid";
    }
    stop_stores();

    # a second concurrent run's directory goes once it passed
    if ($servroot =~ /\.$$\z/ && Test::More->builder->is_passing) {
        remove_tree($servroot);
        unlink "$servroot.lock";
    }

    $? = $rc;
}


1;
