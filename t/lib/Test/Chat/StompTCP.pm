# Test::Chat::StompTCP: a raw STOMP client over plain TCP or TLS (chat_stomp),
# with the STOMP methods of Test::Chat::WebSocket (stomp_recv, stomp_expect,
# subscribe, disconnect, ...) on a byte stream instead of WebSocket messages.

package Test::Chat::StompTCP;

use strict;
use warnings;

use parent -norequire, 'Test::Chat::WebSocket';

use Exporter 'import';
use IO::Socket::INET;
use IO::Socket::SSL;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

use Test::Chat::Util;
use Test::Chat::WebSocket;

our @EXPORT = qw(tcp_connect tcp_stomp_connect);


# tcp_connect(%o): a connection to o{port} (TEST_NGINX_STOMP_PORT, or
# TEST_NGINX_STOMP_TLS_PORT with o{tls}); o{ca}: the server's certificate
# is verified against it (name: localhost); o{cert}, o{key}: a client
# certificate. undef (and $@) when it cannot connect.
sub tcp_connect {
    my (%o) = @_;
    my ($sock, $port);

    $port = $o{port} // ($o{tls} ? $ENV{TEST_NGINX_STOMP_TLS_PORT}
                                 : $ENV{TEST_NGINX_STOMP_PORT});

    if ($o{tls}) {
        $sock = IO::Socket::SSL->new(
            PeerAddr => '127.0.0.1', PeerPort => $port,
            Timeout => $o{timeout} // 5,
            ($o{ca} ? (SSL_verify_mode => SSL_VERIFY_PEER,
                       SSL_ca_file => $o{ca},
                       SSL_verifycn_scheme => 'http',
                       SSL_verifycn_name => 'localhost')
                    : (SSL_verify_mode => SSL_VERIFY_NONE)),
            ($o{cert} ? (SSL_cert_file => $o{cert},
                         SSL_key_file => $o{key}) : ()));
        $@ = $IO::Socket::SSL::SSL_ERROR unless $sock;

    } else {
        $sock = IO::Socket::INET->new(
            PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
            Timeout => $o{timeout} // 5);
    }

    return undef unless $sock;

    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);

    return bless { sock => $sock, rbuf => '', stomp_buf => '',
                   status => 101 }, __PACKAGE__;
}


# stomp_send(command, headers, body, %o): one frame (stomp_frame()) in one
# write; o{split}: in writes of that many bytes, o{pause} seconds apart
# (default 0.005, so that each comes in a read of its own)
sub stomp_send {
    my ($self, $cmd, $headers, $body, %o) = @_;
    my $f = stomp_frame($cmd, $headers, $body, %o);

    return $self->send_raw($f) unless $o{split};

    while (length $f) {
        $self->send_raw(substr($f, 0, $o{split}, '')) or return 0;
        sleep($o{pause} // 0.005);
    }

    return 1;
}


# the byte stream in the pieces it comes: what stomp_recv() parses
sub recv_message {
    my ($self, $timeout) = @_;

    unless (length $self->{rbuf}) {
        $self->_fill($timeout // 5) or return undef;
    }

    my $p = $self->{rbuf};
    $self->{rbuf} = '';

    return { opcode => 1, payload => $p };
}


# is_eof(timeout): true if the server closes the connection within
# timeout; what comes before is kept for stomp_recv()
sub is_eof {
    my ($self, $timeout) = @_;
    my $until = time + ($timeout // 5);

    while (!$self->{eof}) {
        my $left = $until - time;
        return 0 if $left <= 0;
        $self->_fill($left);
        $self->{stomp_buf} .= $self->{rbuf};
        $self->{rbuf} = '';
    }

    return 1;
}


# tcp_stomp_connect(%o) -> a client after CONNECTED ({connected}); dies
# otherwise. o: user (a passcode token is made), token, login, heart_beat
# ('0,0'), version ('1.2'), headers, plus what tcp_connect() takes.
sub tcp_stomp_connect {
    my (%o) = @_;
    my (@h, $token);

    my $c = tcp_connect(%o)
        or die "tcp_stomp_connect: cannot connect: $@\n";

    $token = $o{token} // (defined $o{user} ? make_token($o{user}) : undef);

    push @h, ['accept-version', $o{version} // '1.2'];
    push @h, ['host', 'localhost'];
    push @h, ['login', $o{login}] if defined $o{login};
    push @h, ['passcode', $token] if defined $token;
    push @h, ['heart-beat', $o{heart_beat} // '0,0'];
    push @h, @{ $o{headers} } if ref $o{headers} eq 'ARRAY';

    $c->stomp_send('CONNECT', \@h, '');

    my $f = $c->stomp_recv($o{timeout});
    if (!$f || $f->{command} ne 'CONNECTED') {
        die "tcp_stomp_connect: expected CONNECTED, got "
            . ($f ? "$f->{command} $f->{body}"
                    . ($f->{headers}{message} // '') : 'nothing') . "\n";
    }

    $c->{connected} = $f;
    $c->{user} = $o{user};

    return $c;
}


1;
