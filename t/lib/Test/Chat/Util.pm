# Test::Chat::Util: tokens, JSON, plain HTTP, Redis and PostgreSQL helpers
# for the ngx_chat test suite (no nginx management here).

package Test::Chat::Util;

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
use MIME::Base64 qw(encode_base64 decode_base64);
use JSON::PP ();

our @EXPORT = qw(
    make_token b64url b64url_decode json_encode json_decode
    http_request api wait_port free_port
    redis_cmd redis_flushall pg_query pg_do reset_db
    server_port server_port2 redis_port pg_port pg_dsn jwt_secret
);


sub server_port  { $ENV{TEST_NGINX_SERVER_PORT} }
sub server_port2 { $ENV{TEST_NGINX_SERVER_PORT2} }
sub redis_port   { Test::Chat::ensure_stores(); $ENV{TEST_NGINX_REDIS_PORT} }
sub pg_port      { Test::Chat::ensure_stores(); $ENV{TEST_NGINX_PG_PORT} }
sub pg_dsn       { Test::Chat::ensure_stores(); $ENV{TEST_NGINX_PG_DSN} }
sub jwt_secret   { $ENV{TEST_NGINX_JWT_SECRET} // 'secret' }


my $json = JSON::PP->new->utf8->canonical->allow_nonref;

sub json_encode { $json->encode($_[0]) }

sub json_decode {
    my ($text) = @_;
    my $v = eval { $json->decode($text) };
    return $v;
}


sub b64url {
    my $s = encode_base64($_[0], '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+\z//;
    return $s;
}

sub b64url_decode {
    my $s = $_[0];
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    return decode_base64($s);
}


# make_token(user, %opts): an HS256 JWT. opts: exp (absolute), ttl
# (default 3600), secret, alg (header alg; HS384/HS512 are really signed
# so, anything else is signed with HS256), name, claims (hashref merged
# in; undef values delete), header (hashref merged into the header),
# signature (replaces the signature), raw_payload (replaces the payload).
sub make_token {
    my ($user, %o) = @_;
    my (%claims, %header, $h, $p, $sig, $alg);

    $alg = $o{alg} // 'HS256';
    %header = (alg => $alg, typ => 'JWT', %{ $o{header} || {} });
    for (keys %header) { delete $header{$_} unless defined $header{$_} }

    %claims = (exp => $o{exp} // int(time) + ($o{ttl} // 3600));
    $claims{sub} = $user if defined $user;
    $claims{name} = $o{name} if defined $o{name};
    %claims = (%claims, %{ $o{claims} || {} });
    for (keys %claims) { delete $claims{$_} unless defined $claims{$_} }

    $h = b64url(json_encode(\%header));
    $p = defined $o{raw_payload} ? b64url($o{raw_payload})
                                 : b64url(json_encode(\%claims));

    my $key = $o{secret} // jwt_secret();
    if ($alg eq 'HS384') {
        $sig = hmac_sha384("$h.$p", $key);
    } elsif ($alg eq 'HS512') {
        $sig = hmac_sha512("$h.$p", $key);
    } else {
        $sig = hmac_sha256("$h.$p", $key);
    }

    $sig = defined $o{signature} ? $o{signature} : b64url($sig);
    return lc($alg) eq 'none' && !defined $o{signature} ? "$h.$p."
                                                        : "$h.$p.$sig";
}


# a random free port below the kernel's ephemeral range, so that runs
# going on at the same time (and outgoing connections) rarely collide
sub free_port {
    for (1 .. 200) {
        my $port = 20000 + int(rand(12000));
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $port, Proto => 'tcp',
                                      Listen => 1);
        return $port if $s;
    }

    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "cannot find a free port: $!\n";
    return $s->sockport;
}

sub wait_port {
    my ($port, $secs) = @_;
    my $until = time + ($secs // 5);

    while (time < $until) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      Timeout => 1);
        return 1 if $s;
        sleep 0.02;
    }

    return 0;
}


# reads everything until EOF or timeout; returns the bytes
sub _read_all {
    my ($sock, $timeout) = @_;
    my ($buf, $sel, $until) = ('', IO::Select->new($sock), time + $timeout);

    while (1) {
        my $left = $until - time;
        last if $left <= 0;
        last unless $sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        last unless $n;
    }

    return $buf;
}


# parses an HTTP response: (status, \%headers (lower-case names; repeated
# headers joined with ", "), body, raw head)
sub parse_http_response {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my (%h, $status);

    return (undef, {}, '', $raw) unless defined $head && length $head;

    my @lines = split /\r\n/, $head;
    my $first = shift @lines;
    ($status) = $first =~ m{^HTTP/\d\.\d\s+(\d+)};

    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }

    $body //= '';

    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/\A([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr($body, 0, $len, '');
            $body =~ s/\A\r\n//;
        }
        $body = $out;
    }

    return ($status, \%h, $body, $head);
}


# http_request(method, path, headers, body, %opts) -> (status, \%headers,
# body). headers: arrayref of "Name: value" strings or [name, value]
# pairs, or a hashref. opts: port (default the server), timeout (5), raw
# (send these bytes instead of building a request), host.
sub http_request {
    my ($method, $path, $headers, $body, %o) = @_;
    my ($port, $sock, $req, @hl, $timeout);

    $port = $o{port} // server_port();
    $timeout = $o{timeout} // 5;

    $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout)
        or die "cannot connect to 127.0.0.1:$port: $!\n";

    if (defined $o{raw}) {
        $req = $o{raw};

    } else {
        if (ref $headers eq 'HASH') {
            @hl = map { "$_: $headers->{$_}" } sort keys %$headers;
        } elsif (ref $headers eq 'ARRAY') {
            @hl = map { ref $_ ? "$_->[0]: $_->[1]" : $_ } @$headers;
        }

        $req = "$method $path HTTP/1.1\r\n";
        $req .= "Host: " . ($o{host} // 'localhost') . "\r\n"
            unless grep /^host:/i, @hl;
        $req .= "Connection: close\r\n" unless grep /^connection:/i, @hl;
        if (defined $body && !grep /^(content-length|transfer-encoding):/i,
                                   @hl)
        {
            $req .= "Content-Length: " . length($body) . "\r\n";
        }
        $req .= "$_\r\n" for @hl;
        $req .= "\r\n";
        $req .= $body if defined $body;
    }

    syswrite($sock, $req) // die "write: $!\n";

    my $raw = _read_all($sock, $timeout);
    close $sock;

    my ($st, $h, $b) = parse_http_response($raw);
    return wantarray ? ($st, $h, $b) : $st;
}


# api(method, path, user, data, %opts) -> (status, decoded JSON or raw
# body, \%headers). path is relative to /chat/api unless it starts with
# "/chat" or opts{prefix} says otherwise. user: a userId (a token is made)
# or undef for no Authorization header; opts{token} overrides.
sub api {
    my ($method, $path, $user, $data, %o) = @_;
    my (@h, $body);

    my $prefix = $o{prefix} // '/chat/api';
    $path = "$prefix$path" unless $path =~ m{^/chat} || $prefix eq '';

    my $token = $o{token} // (defined $user ? make_token($user) : undef);
    push @h, "Authorization: Bearer $token" if defined $token;
    push @h, @{ $o{headers} || [] };

    if (defined $data) {
        $body = ref $data ? json_encode($data) : $data;
        push @h, 'Content-Type: application/json';
    }

    my ($st, $h, $b) = http_request($method, $path, \@h, $body, %o);
    my $j = defined $b && length $b ? json_decode($b) : undef;

    return ($st, $j // $b, $h);
}


# --- Redis (a tiny synchronous RESP client) ---

my $redis_sock;

sub _redis_read_line {
    my ($s) = @_;
    my ($line, $c) = ('', '');

    while (sysread($s, $c, 1)) {
        $line .= $c;
        last if $line =~ /\r\n\z/;
    }

    die "redis: connection closed\n" unless $line =~ s/\r\n\z//;
    return $line;
}

sub _redis_read_reply {
    my ($s) = @_;
    my $line = _redis_read_line($s);
    my ($t, $rest) = (substr($line, 0, 1), substr($line, 1));

    return $rest if $t eq '+';
    return $rest + 0 if $t eq ':';
    return "ERR:$rest" if $t eq '-';

    if ($t eq '$') {
        return undef if $rest < 0;
        my $buf = '';
        while (length $buf < $rest + 2) {
            my $n = sysread($s, $buf, $rest + 2 - length $buf, length $buf);
            die "redis: connection closed\n" unless $n;
        }
        return substr($buf, 0, $rest);
    }

    if ($t eq '*') {
        return undef if $rest < 0;
        return [ map { _redis_read_reply($s) } 1 .. $rest ];
    }

    die "redis: bad reply '$line'\n";
}

# redis_cmd(@args): one command; errors come back as "ERR:<text>"
sub redis_cmd {
    my @args = @_;

    my $reply = eval { _redis_cmd(@args) };
    return $reply unless $@;

    # the server may have restarted since: one more try on a new connection
    undef $redis_sock;
    return _redis_cmd(@args);
}

sub _redis_cmd {
    my @args = @_;

    unless ($redis_sock && $redis_sock->connected) {
        $redis_sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                            PeerPort => redis_port(),
                                            Proto => 'tcp', Timeout => 5)
            or die "redis: cannot connect: $!\n";
    }

    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    syswrite($redis_sock, $req) // die "redis: write: $!\n";

    return _redis_read_reply($redis_sock);
}

sub redis_flushall {
    return redis_cmd('FLUSHALL');
}


# --- PostgreSQL (through psql) ---

sub _psql {
    my ($sql, @opts) = @_;
    my $dsn = pg_dsn();

    open(my $fh, '-|', 'psql', $dsn, '-X', '-q', '-At', '-F', "\t",
         '-v', 'ON_ERROR_STOP=1', @opts, '-c', $sql)
        or die "psql: $!\n";
    local $/;
    my $out = <$fh>;
    close $fh or die "psql failed: $sql\n";
    return $out // '';
}

# pg_query(sql) -> list of rows, each an arrayref of column strings
sub pg_query {
    my $out = _psql($_[0]);
    return map { [ split /\t/, $_, -1 ] } split /\n/, $out;
}

# pg_do(sql): runs statements, dies on error
sub pg_do {
    _psql($_[0]);
    return 1;
}

# reset_db(): empties every table except schema_migrations
sub reset_db {
    pg_do(q{
        DO $$
        DECLARE t text;
        BEGIN
            SELECT string_agg(quote_ident(schemaname) || '.'
                              || quote_ident(tablename), ', ')
              INTO t
              FROM pg_tables
             WHERE schemaname = 'public'
               AND tablename <> 'schema_migrations';
            IF t IS NOT NULL THEN
                EXECUTE 'TRUNCATE ' || t || ' RESTART IDENTITY CASCADE';
            END IF;
        END $$;
    });
}


1;
