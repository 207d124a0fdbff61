# deb.t: the Debian packages (make deb, debian/) installed into this
# machine the way an operator does it: apt-get install ./build/deb/*.deb
# gives a stock nginx that loads the module from modules-enabled; the
# example site passes nginx -t and chats through a separate stock nginx
# (its own prefix, pid and port) against the test Redis, PostgreSQL and
# broker; ngx-chat-migrate, chat-token and the workers run from the
# package as its system user with its /etc/ngx-chat settings; the systemd
# units verify (and start, where systemd runs); the binary upgrade of
# README.md (USR2, then QUIT of the old master) loses nothing; apt-get
# purge leaves nothing behind but the system user (Debian keeps system
# users).
#
# The package build is reused while none of the files it is made from
# changed (scripts/deb.sh hashes them): a cold build adds ~40 s (more on a
# loaded machine); the rest takes ~25 s.

use lib 't/lib';
use Test::Chat;

plan(skip_all => 'the packages install into the machine: run as root'
                 . ' (CI does)')
    if $> != 0;
plan(skip_all => 'dpkg-buildpackage, dh or help2man missing: make deps'
                 . ' installs them')
    if system('command -v dpkg-buildpackage >/dev/null'
              . ' && command -v dh >/dev/null'
              . ' && command -v help2man >/dev/null') != 0;
plan(skip_all => 'the packages are built for Debian\'s nginx, not the'
                 . ' sanitizer build (make test runs this file)')
    if $ENV{CHAT_ASAN};

plan_from_blocks();

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use File::Path qw(make_path remove_tree);
use Fcntl qw(:flock);
use File::Spec;
use File::Temp ();
use IO::Uncompress::Gunzip qw(gunzip);
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

our @PKGS = qw(libnginx-mod-chat ngx-chat-workers
               libnginx-mod-chat-dbgsym ngx-chat-workers-dbgsym);
our $DEB = "$Test::Chat::ROOT/build/deb";
my $installed;

# the packages are the machine's: one t/deb.t at a time on it (another
# checkout's make test may run one); waits up to secs for the other
my $machine_lock;

sub lock_machine {
    my ($secs) = @_;
    my $dir = -d '/run/lock' ? '/run/lock' : File::Spec->tmpdir;
    open($machine_lock, '>', "$dir/ngx-chat-deb-test.lock") or return 0;
    my $until = time + $secs;
    until (flock($machine_lock, LOCK_EX | LOCK_NB)) {
        return 0 if time > $until;
        sleep 0.5;
    }
    return 1;
}

# sh_run(cmd): (exit code, stdout and stderr)
sub sh_run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub apt {
    my ($args) = @_;
    return sh_run('DEBIAN_FRONTEND=noninteractive apt-get -y -q'
               . " -o DPkg::Lock::Timeout=120 $args");
}

sub install {
    my @debs = glob("$DEB/*.deb");
    my @r = apt('install ' . join(' ', map { "'$_'" } @debs));
    $installed = 1;
    return @r;
}

sub purge {
    my @have = grep {
        `dpkg-query -W -f='\${db:Status-Abbrev}' $_ 2>/dev/null` =~ /^[ir]/
    } @PKGS;
    $installed = 0;
    return (0, '') unless @have;
    return apt('purge ' . join(' ', @have));
}

# the status of a package, e.g. "ii " (installed), "" (unknown to dpkg)
sub pkg_status {
    my $s = `dpkg-query -W -f='\${db:Status-Abbrev}' $_[0] 2>/dev/null`;
    return $? == 0 ? $s : '';
}

# a unit file's Key= values, in order
sub unit_values {
    my ($file, $key) = @_;
    open(my $fh, '<', $file) or return ();
    return map { /^\Q$key\E=(.*)$/ ? $1 : () } <$fh>;
}

# rewrites name = value settings of an /etc/ngx-chat file
sub set_conf {
    my ($file, %set) = @_;
    open(my $fh, '<', $file) or die "$file: $!\n";
    my @lines = <$fh>;
    close $fh;
    for my $k (keys %set) {
        my $n = 0;
        for (@lines) {
            $n++ if s/^\s*#?\s*\Q$k\E\s*=.*$/$k = $set{$k}/;
        }
        push @lines, "$k = $set{$k}\n" unless $n;
    }
    open($fh, '>', $file) or die "$file: $!\n";
    print $fh @lines;
    close $fh;
}

# a unit's ExecStart as its User (setpriv execs it: the pid is the
# daemon's), the output to log, NOTIFY_SOCKET set when notify (a socket)
# is given and the unit is Type=notify; the pid
sub spawn_unit {
    my ($unit, $log, $notify) = @_;
    my $file = "/lib/systemd/system/$unit";
    my ($exec) = unit_values($file, 'ExecStart');
    my ($user) = unit_values($file, 'User');
    die "$unit: no ExecStart or User\n" unless $exec && $user;
    my $pid = fork() // die "fork: $!\n";
    if ($pid == 0) {
        open(STDOUT, '>>', $log);
        open(STDERR, '>&', \*STDOUT);
        $ENV{NOTIFY_SOCKET} = $notify->hostpath
            if $notify && (unit_values($file, 'Type'))[0] eq 'notify';
        exec('setpriv', "--reuid=$user", "--regid=$user", '--init-groups',
             '--', split(' ', $exec));
        exit 127;
    }
    return $pid;
}

# a datagram socket for sd_notify messages, which the unit's user can
# reach; messages come back by notify_wait($sock, qr/READY=1/, secs)
sub notify_socket {
    my ($name) = @_;
    my $dir = File::Temp::tempdir('ngx-chat-deb-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 1);
    chmod 0755, $dir;
    my $path = "$dir/$name";
    my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path)
        or die "$path: $!\n";
    chmod 0777, $path;
    return $s;
}

sub notify_wait {
    my ($s, $re, $secs) = @_;
    my $until = time + $secs;
    my $sel = IO::Select->new($s);
    while ((my $left = $until - time) > 0) {
        next unless $sel->can_read($left);
        my $msg = '';
        defined $s->recv($msg, 4096) or return 0;
        return 1 if $msg =~ $re;
    }
    return 0;
}

# a file of a .deb of build/deb/ (whether or not dpkg's path-exclude,
# as in slim container images, kept it off the disk)
sub deb_file {
    my ($pkg, $path) = @_;
    my ($deb) = glob(deb_dir() . "/${pkg}_*.deb");
    return undef unless $deb;
    my $out = `dpkg-deb --fsys-tarfile '$deb' | tar -xOf - '.$path'`;
    return $? == 0 ? $out : undef;
}

sub read_pid {
    my ($file) = @_;
    open(my $fh, '<', $file) or return undef;
    my $pid = <$fh>;
    return defined $pid && $pid =~ /^(\d+)$/ ? $1 : undef;
}

sub wait_file_like {
    my ($file, $re, $secs) = @_;
    my $until = time + $secs;
    while (time < $until) {
        if (open(my $fh, '<', $file)) {
            local $/;
            my $text = <$fh>;
            return 1 if $text =~ $re;
        }
        sleep 0.2;
    }
    return 0;
}

# stops a child with SIGTERM; its exit code (undef if it had to be killed)
sub stop_child {
    my ($pid, $secs) = @_;
    kill 'TERM', $pid;
    my $until = time + $secs;
    while (time < $until) {
        return $? >> 8 if waitpid($pid, WNOHANG) == $pid;
        sleep 0.1;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return undef;
}

our $NGINX_PREFIX = servroot() . '/stock-nginx';

sub deb_dir { $DEB }
sub packages { @PKGS }
sub nginx_prefix { $NGINX_PREFIX }

sub stock_nginx {
    my ($args) = @_;
    return sh_run("/usr/sbin/nginx -p '$NGINX_PREFIX/' -c conf/nginx.conf"
               . " $args");
}

END {
    if (-f "$NGINX_PREFIX/logs/nginx.pid") {
        stock_nginx('-s stop');
    }
    purge() if $installed;
}

package main;

run_tests();

__DATA__

=== TEST 1: make deb, apt-get install, the stock nginx with the example site, a chat, the workers, apt-get purge
--- config
    location = /unused {
        return 204;
    }
--- tests: 55
--- perl_timeout: 480
--- perl
my ($DEB, $NGINX_PREFIX) = (deb_dir(), nginx_prefix());

ok(lock_machine(240), 'no other t/deb.t on this machine meanwhile');

# --- build (or reuse) and install
my ($rc, $out) = sh_run("$Test::Chat::ROOT/scripts/deb.sh '$DEB'");
is($rc, 0, 'make deb builds the packages (lintian: no error)')
    or diag($out);
my @debs = map { s{.*/}{}r } glob("$DEB/*.deb");
ok((grep { /^libnginx-mod-chat_.*\.deb$/ } @debs)
   && (grep { /^ngx-chat-workers_.*\.deb$/ } @debs),
   'build/deb/ has libnginx-mod-chat and ngx-chat-workers')
    or diag("@debs");

# from a clean state (a package of the same version left by an earlier
# run would not be replaced)
purge();
($rc, $out) = install();
is($rc, 0, 'apt-get install ./build/deb/*.deb') or diag($out);
is(pkg_status('libnginx-mod-chat') . pkg_status('ngx-chat-workers'),
   'ii ii ', 'both packages installed');

my ($abi) = `dpkg-query -W -f='\${Provides}' nginx` =~ /(nginx-abi-[^\s,]+)/;
my $deps = `dpkg-query -W -f='\${Depends}' libnginx-mod-chat`;
ok($abi && $deps =~ /(^|, )\Q$abi\E(,|$)/,
   "libnginx-mod-chat depends on the installed nginx's ABI ($abi)")
    or diag($deps);

my $link = '/etc/nginx/modules-enabled/50-mod-chat.conf';
is(readlink($link), '/usr/share/nginx/modules-available/mod-chat.conf',
   'modules-enabled links mod-chat.conf');
my $modconf = do { local (@ARGV, $/) = $link; <> } // '';
is($modconf, "load_module modules/ngx_chat_module.so;\n",
   'mod-chat.conf loads the module from nginx\'s modules directory');
ok(-f '/usr/lib/nginx/modules/ngx_chat_module.so', 'the module .so');
my @so = grep { m{^/usr/lib/nginx/modules/ngx_chat\w*_module\.so$} }
         split /\n/, `dpkg -L libnginx-mod-chat`;
my $enabled = join '', map { do { local (@ARGV, $/) = $_; <> } }
              glob('/etc/nginx/modules-enabled/*.conf');
my @unloaded = grep { my $b = s{.*/}{}r;
                      $enabled !~ m{^load_module modules/\Q$b\E;$}m } @so;
ok(@so && !@unloaded, 'modules-enabled loads every module .so of the'
                      . ' package (' . join(' ', map { s{.*/}{}r } @so)
                      . ')')
    or diag("not loaded: @unloaded");

($rc, $out) = sh_run('/usr/sbin/nginx -t');
is($rc, 0, 'nginx -t: the stock /etc/nginx/nginx.conf loads the module')
    or diag($out);

my @pw = getpwnam('ngx-chat');
ok(@pw && $pw[8] =~ m{/(nologin|false)$} && $pw[7] eq '/nonexistent',
   'the system user ngx-chat: no shell, no home');
my @st = stat('/etc/ngx-chat/persist.conf');
ok(@st && ($st[2] & 07777) == 0640 && $st[5] == ($pw[3] // -1),
   '/etc/ngx-chat/persist.conf: 0640, group ngx-chat');

# --- the units: hardened, and valid
my @units = map { "/lib/systemd/system/$_" }
            qw(chat-persist.service chat-persist@.service chat-push.service);
my @bad = grep {
    my $f = $_;
    !(unit_values($f, 'NoNewPrivileges'))[0]
    || (unit_values($f, 'ProtectSystem'))[0] ne 'strict'
    || (unit_values($f, 'User'))[0] ne 'ngx-chat'
    || !(unit_values($f, 'ExecStart'))[0]
} @units;
is("@bad", '', 'the three units: User=ngx-chat, ProtectSystem=strict,'
               . ' NoNewPrivileges');
SKIP: {
    skip('systemd-analyze is not installed', 1)
        if system('command -v systemd-analyze >/dev/null') != 0;
    ($rc, $out) = sh_run("systemd-analyze verify @units");
    is($rc, 0, 'systemd-analyze verify: the units') or diag($out);
}

# --- the stock nginx, its own prefix, the example site
my $example = '/usr/share/doc/libnginx-mod-chat/examples/chat-site.conf';
my $site = -f $example ? do { local (@ARGV, $/) = $example; <> }
                       : deb_file('libnginx-mod-chat', $example);
$site //= '';
my $port = free_port();
my $brokers = $ENV{TEST_NGINX_KAFKA_BROKERS};
my $secret = jwt_secret();
my $n = 0;
$n += $site =~ s/^chat_redis .*;$/chat_redis 127.0.0.1:${\ redis_port()};/m;
$n += $site =~ s/^chat_postgres .*;$/chat_postgres "${\ pg_dsn()}";/m;
$n += $site =~ s/^chat_kafka .*;$/chat_kafka $brokers;/m;
$n += $site =~ s/^chat_jwt_secret .*;$/chat_jwt_secret "$secret";/m;
$n += $site =~ s/^(\s*)listen 80;$/$1listen 127.0.0.1:$port;/m;
$n += $site =~ s/^\s*listen \[::\]:80;\n//m;
is($n, 6, 'the example site names the stores, the secret and the port');

remove_tree($NGINX_PREFIX);
make_path("$NGINX_PREFIX/conf", "$NGINX_PREFIX/logs");
# load_module modules/...: relative to the prefix, as in the stock prefix
# (/usr/share/nginx/modules is a link to /usr/lib/nginx/modules)
symlink('/usr/lib/nginx/modules', "$NGINX_PREFIX/modules") or die $!;
open(my $fh, '>', "$NGINX_PREFIX/conf/chat-site.conf") or die $!;
print $fh $site;
close $fh;
my $user = Test::Chat::_nginx_user();
open($fh, '>', "$NGINX_PREFIX/conf/nginx.conf") or die $!;
print $fh <<"_EOC_";
# the stock layout: modules from /etc/nginx/modules-enabled/, the site
# included in http {}
include /etc/nginx/modules-enabled/*.conf;
$user
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events {
    worker_connections 256;
}
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    include chat-site.conf;
}
_EOC_
close $fh;

($rc, $out) = stock_nginx('-t');
is($rc, 0, 'nginx -t with the example site') or diag($out);
($rc, $out) = stock_nginx('');
is($rc, 0, 'the stock nginx starts') or diag($out);
ok(wait_port($port, 10), 'it listens on its port');

# --- a chat through it: a token from the package's chat-token
my $tok = `/usr/bin/chat-token --secret '$secret' debalice`;
chomp $tok;
like($tok, qr/^[\w-]+\.[\w-]+\.[\w-]+$/, 'chat-token (package) makes a JWT');
my ($s, $j) = api(POST => '/conversations', 'debalice',
                  { type => 'group', name => 'deb',
                    members => ['debbob', 'debcarol'] },
                  token => $tok, port => $port);
is($s, 201, 'REST: a conversation through the packaged module');
my $conv = ref $j ? $j->{conversationId} : undef;
($s) = api(POST => '/devices', 'debcarol',
           { platform => 'android', token => "deb-carol-$$" },
           port => $port);
is($s, 201, 'REST: carol (offline) registers a device');

my $alice = member('debalice', token => $tok, port => $port);
my $bob = member('debbob', port => $port);
send_msg($alice, $conv, 'hello from the package', cmid => 'deb1',
         receipt => 'rdeb1');
my $r = $alice->stomp_wait(sub { $_->{command} eq 'RECEIPT' }, 5);
is($r && $r->{headers}{'receipt-id'}, 'rdeb1',
   'STOMP: the SEND is receipted (Kafka holds it)');
my $m = $bob->stomp_message('/user/queue/messages', 5);
is($m && $m->{content}, 'hello from the package',
   'STOMP: bob gets the message');
my $seq = $m && $m->{seq};

# --- migrations from the package: the test database is up to date
($rc, $out) = sh_run("/usr/sbin/ngx-chat-migrate '${\ pg_dsn()}'");
is($rc, 0, 'ngx-chat-migrate runs') or diag($out);
like($out, qr/^migrate: 0 applied, database up to date$/m,
     'ngx-chat-migrate: the package\'s migrations are those applied');
my @sql = map { s{.*/}{}r =~ s/\.sql$//r }
          glob('/usr/share/ngx-chat/sql/[0-9]*.sql');
my $applied = join ' ', map { $_->[0] } pg_query(
    'SELECT version FROM schema_migrations ORDER BY version');
is("@sql", $applied, '/usr/share/ngx-chat/sql holds every migration');
my %man;
for my $page (qw(man8/ngx-chat-migrate.8 man1/chat-token.1)) {
    my $gz = deb_file('ngx-chat-workers', "/usr/share/man/$page.gz");
    gunzip(\$gz => \$man{$page}) if defined $gz;
}
like($man{'man8/ngx-chat-migrate.8'} // '',
     qr/^\.SH NAME\s+ngx-chat-migrate \\- apply/m,
     'ngx-chat-migrate(8): a man page (help2man of its --help)');
like($man{'man1/chat-token.1'} // '',
     qr/^\.SH NAME\s+chat-token \\- make an HS256 JWT(?s:.*)\\-\\-secret/m,
     'chat-token(1): a man page with its options');

# --- the workers from the package, as the units run them (User=,
# ExecStart=, /etc/ngx-chat/*.conf); a group of their own
my $logdir = servroot() . '/deb-workers';
make_path($logdir);
chmod 0755, $logdir;
my $group = "tdeb-$$-" . int(time);
set_conf('/etc/ngx-chat/persist.conf', brokers => $brokers,
         database => pg_dsn(), 'group-id' => "$group-persist",
         'stats-interval' => 0, 'batch-wait' => 20);
set_conf('/etc/ngx-chat/push.conf', brokers => $brokers,
         database => pg_dsn(), redis => '127.0.0.1:' . redis_port(),
         'group-id' => "$group-push", window => 500);

my $systemd = -d '/run/systemd/system'
              && `ps -p 1 -o comm=` =~ /^systemd/;
SKIP: {
    skip('systemd is not PID 1 here (a container): the units are'
         . ' verified, their ExecStart runs as their User below', 2)
        unless $systemd;
    ($rc, $out) = sh_run('systemctl start chat-persist chat-push'
                      . ' && sleep 1 && systemctl is-active chat-persist'
                      . ' chat-push');
    is($rc, 0, 'systemctl start chat-persist chat-push: active')
        or diag($out);
    ($rc, $out) = sh_run('systemctl stop chat-persist chat-push');
    is($rc, 0, 'systemctl stop') or diag($out);
}

my ($n1, $n2) = (notify_socket('persist'), notify_socket('push'));
my $pid1 = spawn_unit('chat-persist.service', "$logdir/persist.log", $n1);
my $pid2 = spawn_unit('chat-push.service', "$logdir/push.log", $n2);
ok(notify_wait($n1, qr/^READY=1$/m, 15),
   'chat-persist tells systemd READY=1 (Type=notify)');
ok(notify_wait($n2, qr/^READY=1$/m, 15),
   'chat-push tells systemd READY=1 (Type=notify)');

my $rows = 0;
my $until = time + 30;
while (time < $until && defined $conv) {
    $rows = (pg_query('SELECT count(*) FROM messages WHERE conversation_id'
                      . " = '$conv' AND content = 'hello from the"
                      . " package'"))[0][0];
    last if $rows;
    sleep 0.3;
}
is($rows, 1, 'chat-persist (package, user ngx-chat) wrote the message to'
             . ' PostgreSQL')
    or diag(`tail -20 $logdir/persist.log`);
ok(wait_file_like("$logdir/push.log", qr/would send to deb-carol-$$/, 20),
   'chat-push (package) notifies the offline member (dry run)')
    or diag(`tail -20 $logdir/push.log`);
is(stop_child($pid1, 40), 0, 'chat-persist: SIGTERM, exit 0');
is(stop_child($pid2, 40), 0, 'chat-push: SIGTERM, exit 0');
ok(notify_wait($n1, qr/^STOPPING=1$/m, 1)
   && notify_wait($n2, qr/^STOPPING=1$/m, 1),
   'both told systemd STOPPING=1 when they drained');

# history through the module, from PostgreSQL and Redis
($s, $j) = api(GET => "/conversations/$conv/messages", 'debbob',
               undef, port => $port);
ok($s == 200 && ref $j && grep({ ($_->{seq} // -1) == ($seq // -2) }
                               @{ $j->{messages} || [] }),
   'REST: the message is in the history');

# --- the binary upgrade of README.md ("Upgrades"): USR2 starts a new
# master (it would load a new module .so), QUIT drains the old one; the
# listening socket stays open, and nothing receipted is lost
send_msg($alice, $conv, 'before the upgrade', cmid => 'deb2',
         receipt => 'rdeb2');
$r = $alice->stomp_wait(sub { $_->{command} eq 'RECEIPT' }, 5);
my $pidf = "$NGINX_PREFIX/logs/nginx.pid";
my $old = read_pid($pidf);
kill 'USR2', $old if $old;
$until = time + 10;
sleep 0.2 while time < $until
                && !(-s "$pidf.oldbin" && (read_pid($pidf) // $old) != $old);
my $new = read_pid($pidf);
ok($r && $old && $new && $new != $old && read_pid("$pidf.oldbin") == $old,
   'USR2: a new master, the old one in nginx.pid.oldbin');
kill 'QUIT', $old if $old;
$until = time + 15;
sleep 0.2 while time < $until && kill(0, $old);
ok($old && !kill(0, $old), 'QUIT: the old master drained and exited');
# bob's own receipted SEND first: his new worker's Redis links are up
# (and his subscription with them) before alice sends
my $bob2 = member('debbob', port => $port);
send_msg($bob2, $conv, 'bob is back', cmid => 'deb3', receipt => 'rdeb3');
$r = $bob2->stomp_wait(sub { $_->{command} eq 'RECEIPT' }, 5);
is($r && $r->{headers}{'receipt-id'}, 'rdeb3',
   'after the upgrade: the new workers receipt a SEND');
my $alice2 = member('debalice', token => $tok, port => $port);
send_msg($alice2, $conv, 'after the upgrade', cmid => 'deb4',
         receipt => 'rdeb4');
my $f = $bob2->stomp_wait(sub { $_->{command} eq 'MESSAGE'
                                && $_->{body} =~ /after the upgrade/ }, 5);
$m = $f && json_decode($f->{body});
is($m && $m->{seq}, ($seq // 0) + 3,
   'and deliver live, with the next seq');
($s, $j) = api(GET => "/conversations/$conv/messages", 'debbob',
               undef, port => $port);
is(join('|', map { $_->{content} } sort { $a->{seq} <=> $b->{seq} }
             @{ (ref $j && $j->{messages}) || [] }),
   'hello from the package|before the upgrade|bob is back'
   . '|after the upgrade',
   'history: every receipted message, none lost, in order');

$alice2->close(1000, 'bye');
$bob2->close(1000, 'bye');
($rc, $out) = stock_nginx('-s quit');
is($rc, 0, 'the stock nginx stops (QUIT)') or diag($out);
$until = time + 10;
sleep 0.2 while time < $until && -f "$NGINX_PREFIX/logs/nginx.pid";
ok(!-f "$NGINX_PREFIX/logs/nginx.pid", 'it is gone');
my $elog = do { local (@ARGV, $/) = "$NGINX_PREFIX/logs/error.log"; <> };
unlike($elog // '', qr/\[(alert|emerg|crit)\]/,
       'no alert, emerg or crit in its error log');

# --- purge: nothing left but the system user
($rc, $out) = purge();
is($rc, 0, 'apt-get purge') or diag($out);
is(join('', map { pkg_status($_) } packages()), '',
   'dpkg knows none of the packages any more (no rc state)');
my @left = grep { -e $_ || -l $_ } (
    $link, "$link.removed",
    '/usr/share/nginx/modules-available/mod-chat.conf',
    '/usr/lib/nginx/modules/ngx_chat_module.so',
    '/etc/ngx-chat', '/usr/share/ngx-chat',
    '/usr/share/doc/libnginx-mod-chat', '/usr/share/doc/ngx-chat-workers',
    '/usr/sbin/chat-persist', '/usr/sbin/chat-push',
    '/usr/sbin/ngx-chat-migrate', '/usr/bin/chat-token',
    '/usr/share/man/man1/chat-token.1.gz',
    '/usr/share/man/man8/ngx-chat-migrate.8.gz',
    glob('/lib/systemd/system/chat-*'),
    glob('/etc/systemd/system/*.wants/chat-*'),
    glob('/var/lib/systemd/deb-systemd-helper-enabled/chat-*'),
    glob('/etc/nginx/modules-enabled/*chat*'),
    glob('/usr/lib/nginx/modules/ngx_chat*'));
is("@left", '', 'no file of the packages is left');
($rc, $out) = sh_run('/usr/sbin/nginx -t');
is($rc, 0, 'nginx -t: the stock configuration without the module')
    or diag($out);
ok(scalar getpwnam('ngx-chat'),
   'the system user ngx-chat stays (Debian keeps system users)');
my $owned = `find /etc /usr /var/lib /var/log -xdev -user ngx-chat 2>/dev/null`;
is($owned, '', 'no file owned by ngx-chat is left');
($rc, $out) = stock_nginx('-t');
isnt($rc, 0, 'the example site no longer passes nginx -t without the'
             . ' module');
like($out, qr/unknown directive "chat_/, '(unknown directive chat_*)');
--- no_error_log
[error]
