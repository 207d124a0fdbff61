# Test::Chat::WebSocket: a raw RFC 6455 client with STOMP on top, for the
# ngx_chat tests (full control over every byte, masks and frame headers).

package Test::Chat::WebSocket;

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use IO::Select;
use Errno qw(EAGAIN EINTR EWOULDBLOCK);
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha1);
use MIME::Base64 qw(encode_base64);
use Carp;

use Test::Chat::Util;

our @EXPORT = qw(ws_connect stomp_connect stomp_frame ws_frame);

use constant GUID => '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

our $DEFAULT_TIMEOUT = 5;


sub _random_bytes {
    my ($n) = @_;
    return join '', map { chr int rand 256 } 1 .. $n;
}


# ws_frame(%o): the bytes of one frame. o: opcode (1), fin (1), rsv (0,
# 3 bits), masked (1), mask (4 bytes; random), payload (''), length
# (override the announced length), len16/len64 (force a longer length
# encoding than needed).
sub ws_frame {
    my (%o) = @_;
    my ($payload, $b0, $b1, $len, $hdr, $mask);

    $payload = $o{payload} // '';
    $b0 = (($o{fin} // 1) ? 0x80 : 0) | ((($o{rsv} // 0) & 7) << 4)
          | (($o{opcode} // 1) & 0x0f);
    $len = $o{length} // length $payload;
    my $masked = $o{masked} // 1;
    $b1 = $masked ? 0x80 : 0;

    if ($o{len64} || $len > 65535) {
        $hdr = pack('CC', $b0, $b1 | 127) . pack('Q>', $len);
    } elsif ($o{len16} || $len > 125) {
        $hdr = pack('CC', $b0, $b1 | 126) . pack('n', $len);
    } else {
        $hdr = pack('CC', $b0, $b1 | $len);
    }

    if ($masked) {
        $mask = $o{mask} // _random_bytes(4);
        my $rep = $mask x (int(length($payload) / 4) + 1);
        $payload = $payload ^ substr($rep, 0, length $payload);
        $hdr .= $mask;
    }

    return $hdr . $payload;
}


# ws_connect($path, %o) -> client (or undef if the TCP connect fails).
# o: port, host, headers (arrayref of "Name: value" or hashref),
# protocols (arrayref; [] for none; default ['v12.stomp']), origin, key,
# ws_version (13), no_upgrade_headers, raw (send these bytes instead of a
# built request), extra (bytes sent right after the request, e.g. the
# first frames), timeout, rcvbuf (SO_RCVBUF, for slow-client tests). The
# client has: status, headers (lower-case
# names), body (non-101 answers), protocol (the selected one), accept_ok.
sub ws_connect {
    my ($path, %o) = @_;
    my ($self, $sock, $req, $key, @hl);

    my $port = $o{port} // server_port();
    my $timeout = $o{timeout} // $DEFAULT_TIMEOUT;

    if ($o{ssl}) {
        require IO::Socket::SSL;
        $sock = IO::Socket::SSL->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Timeout => $timeout,
                                     SSL_verify_mode => 0);
    } else {
        $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      Timeout => $timeout);
    }

    return undef unless $sock;
    $sock->autoflush(1);

    # a small receive buffer makes a "slow client" quickly
    if ($o{rcvbuf}) {
        require Socket;
        setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(),
                   $o{rcvbuf});
    }

    $self = bless { sock => $sock, rbuf => '', eof => 0, port => $port,
                    stomp_buf => '', frames => [], heartbeats => 0 },
                  __PACKAGE__;

    if (defined $o{raw}) {
        $req = $o{raw};

    } else {
        $key = $o{key} // encode_base64(_random_bytes(16), '');
        $self->{key} = $key;

        my $h = $o{headers} || [];
        if (ref $h eq 'HASH') {
            @hl = map { "$_: $h->{$_}" } sort keys %$h;
        } else {
            @hl = map { ref $_ ? "$_->[0]: $_->[1]" : $_ } @$h;
        }

        my $protos = exists $o{protocols} ? $o{protocols} : ['v12.stomp'];

        $req = "GET $path HTTP/1.1\r\n"
             . "Host: " . ($o{host} // "127.0.0.1:$port") . "\r\n";
        unless ($o{no_upgrade_headers}) {
            $req .= "Upgrade: websocket\r\n"
                  . "Connection: Upgrade\r\n"
                  . "Sec-WebSocket-Key: $key\r\n"
                  . "Sec-WebSocket-Version: " . ($o{ws_version} // 13)
                  . "\r\n";
        }
        $req .= "Sec-WebSocket-Protocol: " . join(', ', @$protos) . "\r\n"
            if $protos && @$protos;
        $req .= "Origin: $o{origin}\r\n" if defined $o{origin};
        $req .= "$_\r\n" for @hl;
        $req .= "\r\n";
    }

    $req .= $o{extra} if defined $o{extra};
    $self->send_raw($req);

    $self->_read_handshake($timeout);

    return $self;
}


sub _fill {
    my ($self, $timeout) = @_;
    my ($n, $sock);

    return 0 if $self->{eof};
    $sock = $self->{sock};

    if ($sock->isa('IO::Socket::SSL') && $sock->pending) {
        $n = sysread($sock, $self->{rbuf}, 65536, length $self->{rbuf});
        return $n if $n;
    }

    return 0 unless IO::Select->new($sock)->can_read($timeout);

    $n = sysread($sock, $self->{rbuf}, 65536, length $self->{rbuf});

    if (!defined $n) {
        return 0 if $! == EAGAIN || $! == EINTR || $! == EWOULDBLOCK;
        $self->{eof} = 1;
        $self->{error} = "$!";
        return 0;
    }

    if ($n == 0) {
        $self->{eof} = 1;
        return 0;
    }

    return $n;
}


sub _read_handshake {
    my ($self, $timeout) = @_;
    my $until = time + $timeout;

    while ($self->{rbuf} !~ /\r\n\r\n/) {
        my $left = $until - time;
        last if $left <= 0 || $self->{eof};
        $self->_fill($left);
    }

    my $i = index($self->{rbuf}, "\r\n\r\n");
    if ($i < 0) {
        $self->{status} = undef;
        $self->{headers} = {};
        return;
    }

    my $head = substr($self->{rbuf}, 0, $i + 4, '');
    my ($status, $h) = Test::Chat::Util::parse_http_response($head);

    $self->{status} = $status;
    $self->{headers} = $h;
    $self->{raw_head} = $head;
    $self->{protocol} = $h->{'sec-websocket-protocol'};

    if (defined $status && $status == 101) {
        if (defined $self->{key}) {
            my $want = encode_base64(sha1($self->{key} . GUID), '');
            $self->{accept_ok} =
                ($h->{'sec-websocket-accept'} // '') eq $want ? 1 : 0;
        }
        return;
    }

    # not upgraded: the rest is an HTTP body
    my $len = $h->{'content-length'};
    while (!$self->{eof} && time < $until) {
        last if defined $len && length $self->{rbuf} >= $len;
        $self->_fill($until - time);
    }
    $self->{body} = $self->{rbuf};
    $self->{rbuf} = '';
}


sub status   { $_[0]->{status} }
sub headers  { $_[0]->{headers} }
sub header   { $_[0]->{headers}{ lc $_[1] } }
sub protocol { $_[0]->{protocol} }
sub body     { $_[0]->{body} }
sub upgraded { ($_[0]->{status} // 0) == 101 }
sub sock     { $_[0]->{sock} }


sub send_raw {
    my ($self, $bytes) = @_;
    my $off = 0;

    local $SIG{PIPE} = 'IGNORE';

    while ($off < length $bytes) {
        my $n = syswrite($self->{sock}, $bytes, length($bytes) - $off, $off);
        unless (defined $n) {
            next if $! == EAGAIN || $! == EINTR;
            $self->{write_error} = "$!";
            return 0;
        }
        $off += $n;
    }

    return 1;
}


# send_frame(%o): see ws_frame()
sub send_frame {
    my ($self, %o) = @_;
    return $self->send_raw(ws_frame(%o));
}

sub send_text {
    my ($self, $s, %o) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    return $self->send_frame(opcode => 1, payload => $s, %o);
}

sub send_binary {
    my ($self, $s, %o) = @_;
    return $self->send_frame(opcode => 2, payload => $s, %o);
}

sub ping {
    my ($self, $payload) = @_;
    return $self->send_frame(opcode => 9, payload => $payload // '');
}


# recv_frame(timeout) -> {opcode, fin, rsv, masked, payload, length} or
# undef on timeout or EOF ($c->{eof} tells which).
sub recv_frame {
    my ($self, $timeout) = @_;
    my $until = time + ($timeout // $DEFAULT_TIMEOUT);

    # a timeout of 0 still reads what is already there
    while (1) {
        my $f = $self->_parse_frame;
        return $f if $f;
        return undef if $self->{eof};
        my $left = $until - time;
        my $n = $self->_fill($left > 0 ? $left : 0);
        return undef if !$n && time >= $until;
    }
}


sub _parse_frame {
    my ($self) = @_;
    my $buf = \$self->{rbuf};
    my ($b0, $b1, $len, $off, $mask, $payload);

    return undef if length $$buf < 2;

    ($b0, $b1) = unpack('CC', $$buf);
    $len = $b1 & 0x7f;
    $off = 2;

    if ($len == 126) {
        return undef if length $$buf < 4;
        $len = unpack('n', substr($$buf, 2, 2));
        $off = 4;
    } elsif ($len == 127) {
        return undef if length $$buf < 10;
        $len = unpack('Q>', substr($$buf, 2, 8));
        $off = 10;
    }

    if ($b1 & 0x80) {
        return undef if length $$buf < $off + 4;
        $mask = substr($$buf, $off, 4);
        $off += 4;
    }

    return undef if length $$buf < $off + $len;

    $payload = substr($$buf, $off, $len);
    substr($$buf, 0, $off + $len, '');

    if (defined $mask) {
        my $rep = $mask x (int($len / 4) + 1);
        $payload ^= substr($rep, 0, $len);
    }

    return { opcode => $b0 & 0x0f, fin => ($b0 & 0x80) ? 1 : 0,
             rsv => ($b0 >> 4) & 7, masked => defined $mask ? 1 : 0,
             payload => $payload, length => $len };
}


# recv_message(timeout) -> {opcode (1 or 2), payload} of a whole data
# message: pings are answered, pongs skipped, fragments joined. A close
# frame is answered (once) and ends it: undef, with close_code set.
sub recv_message {
    my ($self, $timeout) = @_;
    my $until = time + ($timeout // $DEFAULT_TIMEOUT);

    while (1) {
        my $left = $until - time;
        my $f = $self->recv_frame($left > 0 ? $left : 0);
        return undef unless $f;

        if ($f->{opcode} == 9) {
            $self->send_frame(opcode => 10, payload => $f->{payload});
            next;
        }

        next if $f->{opcode} == 10;

        if ($f->{opcode} == 8) {
            $self->_got_close($f);
            return undef;
        }

        # fragments wait in the object, so a timeout loses nothing
        if ($f->{opcode} == 0) {
            $self->{frag_data} .= $f->{payload};
        } else {
            $self->{frag_op} = $f->{opcode};
            $self->{frag_data} = $f->{payload};
        }

        next unless $f->{fin};

        my $m = { opcode => $self->{frag_op}, payload => $self->{frag_data} };
        delete @$self{qw(frag_op frag_data)};
        return $m;
    }
}


sub _got_close {
    my ($self, $f) = @_;
    my $p = $f->{payload};

    if (length $p >= 2) {
        $self->{close_code} = unpack('n', $p);
        $self->{close_reason} = substr($p, 2);
    } else {
        $self->{close_code} = 1005;
        $self->{close_reason} = '';
    }

    unless ($self->{close_sent}) {
        $self->send_frame(opcode => 8, payload => substr($p, 0, 2));
        $self->{close_sent} = 1;
    }
}


# close(code, reason): sends a close frame (no code: empty payload)
sub close {
    my ($self, $code, $reason) = @_;
    my $p = defined $code ? pack('n', $code) . ($reason // '') : '';

    $self->{close_sent} = 1;
    return $self->send_frame(opcode => 8, payload => $p);
}


# expect_close(timeout) -> the close code of the server's close frame
# (1005 when it had none), skipping anything before it; undef on timeout
# or EOF without a close frame.
sub expect_close {
    my ($self, $timeout) = @_;
    my $until = time + ($timeout // $DEFAULT_TIMEOUT);

    return $self->{close_code} if defined $self->{close_code};

    while (1) {
        my $left = $until - time;
        my $f = $self->recv_frame($left > 0 ? $left : 0);
        return undef unless $f;
        if ($f->{opcode} == 8) {
            $self->_got_close($f);
            return $self->{close_code};
        }
        push @{ $self->{skipped} }, $f;
    }
}

sub close_code   { $_[0]->{close_code} }
sub close_reason { $_[0]->{close_reason} }


# is_eof(timeout): true if the server closes the TCP connection within
# timeout; whatever arrives before is parsed and kept in {skipped}
sub is_eof {
    my ($self, $timeout) = @_;
    my $until = time + ($timeout // $DEFAULT_TIMEOUT);

    while (!$self->{eof}) {
        my $left = $until - time;
        return 0 if $left <= 0;
        $self->_fill($left);
        while (my $f = $self->_parse_frame) {
            push @{ $self->{skipped} }, $f;
            $self->_got_close($f) if $f->{opcode} == 8
                                     && !defined $self->{close_code};
        }
    }

    return 1;
}


sub shutdown_write {
    my ($self) = @_;
    shutdown($self->{sock}, 1);
}

sub disconnect_tcp {
    my ($self) = @_;
    CORE::close($self->{sock});
    $self->{eof} = 1;
}


# --- STOMP ---

sub _stomp_escape {
    my ($s) = @_;
    $s =~ s/\\/\\\\/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    $s =~ s/:/\\c/g;
    return $s;
}

sub _stomp_unescape {
    my ($s) = @_;
    $s =~ s/\\(.)/$1 eq 'n' ? "\n" : $1 eq 'r' ? "\r" : $1 eq 'c' ? ':'
                 : $1 eq '\\' ? '\\' : "\\$1"/ge;
    return $s;
}


# stomp_frame(command, headers, body, %o): the bytes of a STOMP frame.
# headers: hashref (sorted) or arrayref of [name, value] pairs (kept in
# order, repeats allowed). Values are escaped except in CONNECT/STOMP
# frames or with o{raw_headers}. o{content_length}: add it (default yes
# when there is a body; 0 to leave it out), o{eol}: "\n" or "\r\n".
sub stomp_frame {
    my ($cmd, $headers, $body, %o) = @_;
    my (@pairs, $f);

    my $eol = $o{eol} // "\n";
    my $esc = !($o{raw_headers} || $cmd eq 'CONNECT' || $cmd eq 'STOMP');

    $body //= '';
    utf8::encode($body) if utf8::is_utf8($body);

    if (ref $headers eq 'HASH') {
        @pairs = map { [$_, $headers->{$_}] } sort keys %$headers;
    } elsif (ref $headers eq 'ARRAY') {
        @pairs = @$headers;
    }

    if (($o{content_length} // length $body)
        && !grep { lc $_->[0] eq 'content-length' } @pairs)
    {
        push @pairs, ['content-length', length $body];
    }

    $f = "$cmd$eol";
    for (@pairs) {
        my ($k, $v) = @$_;
        next unless defined $v;
        $f .= ($esc ? _stomp_escape($k) : $k) . ':'
            . ($esc ? _stomp_escape($v) : $v) . $eol;
    }
    $f .= $eol . $body . "\0";

    return $f;
}


# stomp_send(command, headers, body, %o): one STOMP frame in one text
# message (o{binary}: a binary message; o{split}: split into messages of
# that many bytes)
sub stomp_send {
    my ($self, $cmd, $headers, $body, %o) = @_;
    my $f = stomp_frame($cmd, $headers, $body, %o);

    if ($o{split}) {
        my @parts;
        push @parts, substr($f, 0, $o{split}, '') while length $f;
        for my $i (0 .. $#parts) {
            $self->send_frame(opcode => $o{binary} ? 2 : 1,
                              payload => $parts[$i]) or return 0;
        }
        return 1;
    }

    return $self->send_frame(opcode => $o{binary} ? 2 : 1, payload => $f);
}


# send_json(destination, data, %headers): SEND with a JSON body
sub send_json {
    my ($self, $dest, $data, %h) = @_;
    my $body = ref $data ? json_encode($data) : $data;

    return $self->stomp_send('SEND', { destination => $dest,
                                       'content-type' => 'application/json',
                                       %h }, $body);
}


# takes one frame off the STOMP buffer; heart-beat EOLs are counted
sub _stomp_parse {
    my ($self) = @_;
    my $b = \$self->{stomp_buf};

    while ($$b =~ s/\A(\r?\n)//) {
        $self->{heartbeats}++;
    }

    return undef unless length $$b;

    my $hend = index($$b, "\n\n");
    my $hend_crlf = index($$b, "\r\n\r\n");
    my ($hlen, $sep);

    if ($hend_crlf >= 0 && ($hend < 0 || $hend_crlf < $hend)) {
        ($hlen, $sep) = ($hend_crlf, 4);
    } elsif ($hend >= 0) {
        ($hlen, $sep) = ($hend, 2);
    } else {
        return undef;
    }

    my $head = substr($$b, 0, $hlen);
    my @lines = split /\r?\n/, $head;
    my $cmd = shift @lines;
    my (%h, @list);
    my $raw = $cmd eq 'CONNECTED';

    for (@lines) {
        my ($k, $v) = split /:/, $_, 2;
        $v //= '';
        unless ($raw) {
            $k = _stomp_unescape($k);
            $v = _stomp_unescape($v);
        }
        push @list, [$k, $v];
        $h{$k} = $v unless exists $h{$k};
    }

    my $bstart = $hlen + $sep;
    my $body;

    if (defined $h{'content-length'}) {
        my $len = $h{'content-length'};
        return undef if length $$b < $bstart + $len + 1;
        $body = substr($$b, $bstart, $len);
        substr($$b, 0, $bstart + $len + 1, '');
    } else {
        my $nul = index($$b, "\0", $bstart);
        return undef if $nul < 0;
        $body = substr($$b, $bstart, $nul - $bstart);
        substr($$b, 0, $nul + 1, '');
    }

    return { command => $cmd, headers => \%h, header_list => \@list,
             body => $body };
}


# stomp_recv(timeout) -> {command, headers, header_list, body} or undef
# (timeout, EOF or WebSocket close: see close_code / eof)
sub stomp_recv {
    my ($self, $timeout) = @_;
    my $until = time + ($timeout // $DEFAULT_TIMEOUT);

    while (1) {
        my $f = $self->_stomp_parse;
        if ($f) {
            $self->{last_frame} = $f;
            return $f;
        }

        my $left = $until - time;
        my $m = $self->recv_message($left > 0 ? $left : 0);
        return undef unless $m;
        $self->{stomp_buf} .= $m->{payload};
    }
}


sub _frame_str {
    my ($f) = @_;
    return 'nothing' unless $f;
    my $s = $f->{command};
    $s .= " $_->[0]:$_->[1]" for @{ $f->{header_list} };
    $s .= " body:$f->{body}" if length $f->{body};
    return $s;
}


# stomp_expect(command, timeout) -> the next frame if it is a <command>;
# otherwise undef (with a diagnostic)
sub stomp_expect {
    my ($self, $cmd, $timeout) = @_;
    my $f = $self->stomp_recv($timeout);

    return $f if $f && $f->{command} eq $cmd;

    Test::More::diag("expected STOMP $cmd, got " . _frame_str($f)
                     . ($self->{close_code}
                        ? " (close code $self->{close_code})" : '')
                     . ($self->{eof} ? ' (EOF)' : ''));
    return undef;
}


# stomp_wait(predicate, timeout) -> the first frame for which
# predicate($frame) is true, skipping (and keeping in {skipped_frames})
# the others; undef on timeout
sub stomp_wait {
    my ($self, $pred, $timeout) = @_;
    my $until = time + ($timeout // $DEFAULT_TIMEOUT);

    while (1) {
        my $left = $until - time;
        my $f = $self->stomp_recv($left > 0 ? $left : 0);
        return undef unless $f;
        local $_ = $f;
        return $f if $pred->($f);
        push @{ $self->{skipped_frames} }, $f;
    }
}


# stomp_message(destination, timeout) -> the decoded JSON body of the next
# MESSAGE to destination (other frames skipped); (json, frame) in list
# context
sub stomp_message {
    my ($self, $dest, $timeout) = @_;
    my $f = $self->stomp_wait(sub {
        $_->{command} eq 'MESSAGE'
        && (!defined $dest || ($_->{headers}{destination} // '') eq $dest)
    }, $timeout);

    return unless $f;
    my $j = json_decode($f->{body});
    return wantarray ? ($j, $f) : $j;
}


# stomp_silent(timeout): true if no frame arrives within timeout
sub stomp_silent {
    my ($self, $timeout) = @_;
    my $f = $self->stomp_recv($timeout // 0.3);
    return 1 unless $f;
    Test::More::diag("unexpected STOMP frame: " . _frame_str($f));
    return 0;
}


# subscribe(destination, id, ack, %o): SUBSCRIBE; waits for the RECEIPT
# (returns true when it came) unless o{no_receipt}. o{headers}: extra.
sub subscribe {
    my ($self, $dest, $id, $ack, %o) = @_;
    my $rid = 'sub-' . ($id // 0) . '-' . int(rand(1e9));

    $self->stomp_send('SUBSCRIBE', [
        [destination => $dest], [id => $id // 0], [ack => $ack // 'auto'],
        ($o{no_receipt} ? () : ([receipt => $rid])),
        map { [$_ => $o{headers}{$_}] } sort keys %{ $o{headers} || {} },
    ]) or return 0;

    return 1 if $o{no_receipt};

    my $f = $self->stomp_wait(sub {
        $_->{command} ne 'MESSAGE'
    }, $o{timeout});

    return 1 if $f && $f->{command} eq 'RECEIPT'
                && ($f->{headers}{'receipt-id'} // '') eq $rid;

    Test::More::diag("SUBSCRIBE $dest: expected RECEIPT $rid, got "
                     . _frame_str($f));
    return 0;
}

sub unsubscribe {
    my ($self, $id, %h) = @_;
    return $self->stomp_send('UNSUBSCRIBE', { id => $id, %h });
}


# disconnect(): DISCONNECT with a receipt; true when the RECEIPT came
sub disconnect {
    my ($self, %o) = @_;
    my $rid = 'bye-' . int(rand(1e9));

    $self->stomp_send('DISCONNECT', { receipt => $rid }) or return 0;
    my $f = $self->stomp_wait(sub { $_->{command} eq 'RECEIPT' },
                              $o{timeout});
    return $f && $f->{headers}{'receipt-id'} eq $rid ? 1 : 0;
}


# stomp_connect($path, %o) -> a client after CONNECTED (its frame in
# {connected}); dies with the frame otherwise. o: user (a token is made
# for it), token, secret, via ('passcode' (default), 'authorization',
# 'query', 'handshake', 'none'), version ('1.2'; accept-version),
# heart_beat ('0,0'), host ('localhost'), login, headers (hashref or
# arrayref of pairs added to CONNECT), command ('CONNECT' or 'STOMP'),
# plus everything ws_connect takes.
sub stomp_connect {
    my ($path, %o) = @_;
    my (@h, @hs, $token, $via);

    $path //= '/ws/chat';
    $via = $o{via} // 'passcode';

    if (defined $o{token}) {
        $token = $o{token};
    } elsif (defined $o{user}) {
        $token = make_token($o{user}, secret => $o{secret},
                            name => $o{name});
    }

    if (defined $token && $via eq 'query') {
        $path .= ($path =~ /\?/ ? '&' : '?') . "access_token=$token";
    }

    @hs = @{ $o{ws_headers} || [] };
    push @hs, "Authorization: Bearer $token"
        if defined $token && $via eq 'handshake';

    my $c = ws_connect($path, %o, headers => \@hs)
        or die "stomp_connect: cannot connect to port "
               . ($o{port} // server_port()) . "\n";

    die "stomp_connect: handshake answered " . ($c->status // 'nothing')
        . "\n" unless $c->upgraded;

    push @h, ['accept-version', $o{version} // '1.2'];
    push @h, ['host', $o{host_header} // 'localhost'];
    push @h, ['login', $o{login}] if defined $o{login};
    push @h, ['passcode', $token] if defined $token && $via eq 'passcode';
    push @h, ['Authorization', "Bearer $token"]
        if defined $token && $via eq 'authorization';
    push @h, ['heart-beat', $o{heart_beat} // '0,0'];

    if (ref $o{headers} eq 'HASH') {
        push @h, map { [$_, $o{headers}{$_}] } sort keys %{ $o{headers} };
    } elsif (ref $o{headers} eq 'ARRAY') {
        push @h, @{ $o{headers} };
    }

    $c->stomp_send($o{command} // 'CONNECT', \@h, '');

    my $f = $c->stomp_recv($o{timeout});
    if (!$f || $f->{command} ne 'CONNECTED') {
        die "stomp_connect: expected CONNECTED, got " . _frame_str($f)
            . "\n";
    }

    $c->{connected} = $f;
    $c->{user} = $o{user};

    return $c;
}


sub DESTROY {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
}


1;
