#!/usr/bin/env perl
# fake-fcm.pl: a fake FCM HTTP v1 and OAuth2 token server on loopback for
# the push tests: checks the JWT assertion against a public key, records
# every request, and answers sends with scripted errors.
#
# usage: fake-fcm.pl --pubkey PEM --project ID --port-file FILE
#                    [--port N] [--pid-file FILE]
#
#   POST /token                           the OAuth2 token endpoint (jwt-bearer)
#   POST /v1/projects/ID/messages:send    FCM send (needs a token we issued)
#   GET  /_requests                       what was received, as a JSON array
#   POST /_script {"token":T,"responses":[{"status":503,"retry_after":"1",
#                  "body":{...}},...]}    the next answers to sends to T
#                                         (then 200 again)
#   POST /_expire                         the issued access tokens stop working
#   POST /_reset                          forgets the requests and scripts

use strict;
use warnings;

use Getopt::Long;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use File::Temp qw(tempdir);
use Time::HiRes qw(time);

my ($pubkey, $project, $port_file, $pid_file) = ('', 'test-project');
my $port = 0;

GetOptions('pubkey=s' => \$pubkey, 'project=s' => \$project,
           'port-file=s' => \$port_file, 'port=i' => \$port,
           'pid-file=s' => \$pid_file)
    or die "usage: $0 --pubkey PEM --project ID --port-file FILE\n";

my $json = JSON::PP->new->utf8->canonical;
my $tmp = tempdir(CLEANUP => 1);

my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                               Listen => 64, ReuseAddr => 1)
    or die "listen: $!\n";

my (@requests, %scripts, %access, $seq);
$seq = 0;

sub write_file {
    my ($path, $data) = @_;
    open(my $fh, '>', "$path.tmp") or die "$path: $!\n";
    print $fh $data;
    close $fh;
    rename("$path.tmp", $path) or die "$path: $!\n";
}

write_file($pid_file, "$$\n") if $pid_file;
write_file($port_file, $ls->sockport . "\n") if $port_file;

$SIG{TERM} = $SIG{INT} = sub { exit 0 };

sub b64url_decode {
    my $s = shift;
    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);
    return decode_base64($s);
}

sub url_decode {
    my $s = shift;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
    return $s;
}

# the assertion: RS256 over header.claims, with the claims FCM needs
sub check_jwt {
    my ($jwt) = @_;
    my ($h, $c, $s) = split /\./, $jwt // '', -1;

    return (0, 'not a JWT') unless defined $s && length $s;

    my $header = eval { $json->decode(b64url_decode($h)) };
    my $claims = eval { $json->decode(b64url_decode($c)) };

    return (0, 'bad JSON') unless ref $header && ref $claims;
    return (0, 'alg is not RS256', $claims) unless $header->{alg} eq 'RS256';

    write_file("$tmp/in", "$h.$c");
    write_file("$tmp/sig", b64url_decode($s));

    my $out = `openssl dgst -sha256 -verify '$pubkey' \\
               -signature '$tmp/sig' '$tmp/in' 2>&1`;

    return (0, "bad signature: $out", $claims) unless $out =~ /Verified OK/;

    my $now = time;

    return (0, 'bad scope', $claims)
        unless ($claims->{scope} // '') eq
               'https://www.googleapis.com/auth/firebase.messaging';
    return (0, 'bad iat/exp', $claims)
        unless ($claims->{iat} // 0) <= $now + 60
               && ($claims->{exp} // 0) > $now
               && $claims->{exp} - $claims->{iat} <= 3600;
    return (0, 'no iss', $claims) unless $claims->{iss};

    return (1, 'ok', $claims);
}

sub fcm_error {
    my ($status, $name, $msg, $code, @more) = @_;
    return { error => { code => $status, message => $msg, status => $name,
             details => [ { '@type' =>
                 'type.googleapis.com/google.firebase.fcm.v1.FcmError',
                 errorCode => $code }, @more ] } };
}

my %default_error = (
    404 => fcm_error(404, 'NOT_FOUND', 'Requested entity was not found.',
                     'UNREGISTERED'),
    429 => fcm_error(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.',
                     'QUOTA_EXCEEDED'),
    500 => fcm_error(500, 'INTERNAL', 'Internal error.', 'INTERNAL'),
    503 => fcm_error(503, 'UNAVAILABLE', 'The service is unavailable.',
                     'UNAVAILABLE'),
);

sub handle {
    my ($method, $path, $headers, $body) = @_;
    my %rec = (at => time, method => $method, path => $path, n => ++$seq);

    if ($path eq '/_requests') {
        return (200, {}, $json->encode(\@requests));
    }

    if ($path eq '/_reset') {
        @requests = (); %scripts = ();
        return (200, {}, '{}');
    }

    if ($path eq '/_expire') {
        %access = ();
        return (200, {}, '{}');
    }

    if ($path eq '/_script') {
        my $s = eval { $json->decode($body) } or return (400, {}, '{}');
        push @{ $scripts{$s->{token}} }, @{ $s->{responses} };
        return (200, {}, '{}');
    }

    if ($path eq '/token' && $method eq 'POST') {
        my %form = map { my ($k, $v) = split /=/, $_, 2;
                         (url_decode($k), url_decode($v // '')) }
                   split /&/, $body;

        $rec{kind} = 'token';
        $rec{grant_type} = $form{grant_type};
        $rec{content_type} = $headers->{'content-type'};

        my ($ok, $why, $claims) = check_jwt($form{assertion});
        @rec{qw(jwt_ok jwt_error claims)} = ($ok ? 1 : 0, $why, $claims);

        if ($ok && ($form{grant_type} // '') eq
                   'urn:ietf:params:oauth:grant-type:jwt-bearer')
        {
            my $t = "at-$seq-" . int(rand(1e9));
            $access{$t} = 1;
            $rec{status} = 200;
            push @requests, \%rec;
            return (200, {}, $json->encode({ access_token => $t,
                                             expires_in => 3599,
                                             token_type => 'Bearer' }));
        }

        $rec{status} = 400;
        push @requests, \%rec;
        return (400, {}, $json->encode({ error => 'invalid_grant',
                                         error_description => $why }));
    }

    if ($path eq "/v1/projects/$project/messages:send" && $method eq 'POST')
    {
        my $msg = eval { $json->decode($body) };
        my $auth = $headers->{authorization} // '';

        $rec{kind} = 'send';
        $rec{body} = $msg;
        $rec{token} = $msg && $msg->{message} ? $msg->{message}{token} : undef;
        $rec{content_type} = $headers->{'content-type'};

        unless ($auth =~ /^Bearer (\S+)$/ && $access{$1}) {
            $rec{status} = 401;
            push @requests, \%rec;
            return (401, {}, $json->encode(fcm_error(401, 'UNAUTHENTICATED',
                'Request had invalid authentication credentials.',
                'THIRD_PARTY_AUTH_ERROR')));
        }

        my $r = $rec{token} && $scripts{$rec{token}}
                ? shift @{ $scripts{$rec{token}} } : undef;

        if ($r && $r->{status} != 200) {
            my %h;
            $h{'Retry-After'} = $r->{retry_after} if $r->{retry_after};
            my $b = $r->{body} // $default_error{$r->{status}}
                    // fcm_error($r->{status}, 'UNKNOWN', 'error', 'UNKNOWN');
            $rec{status} = $r->{status};
            push @requests, \%rec;
            return ($r->{status}, \%h, $json->encode($b));
        }

        $rec{status} = 200;
        push @requests, \%rec;
        return (200, {}, $json->encode({
            name => "projects/$project/messages/$seq" }));
    }

    return (404, {}, '{"error":"no such path"}');
}

my $sel = IO::Select->new($ls);
my %buf;

for (;;) {
    for my $s ($sel->can_read(1)) {
        if ($s == $ls) {
            my $c = $ls->accept or next;
            $sel->add($c);
            $buf{$c} = '';
            next;
        }

        my $n = sysread($s, my $data, 65536);

        if (!$n) {
            $sel->remove($s);
            delete $buf{$s};
            close $s;
            next;
        }

        $buf{$s} .= $data;

        # every complete request in the buffer
        while ($buf{$s} =~ /\A(.*?)\r\n\r\n/s) {
            my $head = $1;
            my ($line, @h) = split /\r\n/, $head;
            my %headers = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () } @h;
            my $len = $headers{'content-length'} // 0;

            last if length($buf{$s}) < length($head) + 4 + $len;

            my $body = substr($buf{$s}, length($head) + 4, $len);
            substr($buf{$s}, 0, length($head) + 4 + $len) = '';

            my ($method, $path) = split / /, $line;
            my ($st, $rh, $rb) = handle($method, $path, \%headers, $body);

            my $out = "HTTP/1.1 $st X\r\nContent-Type: application/json\r\n"
                    . "Content-Length: " . length($rb) . "\r\n";
            $out .= "$_: $rh->{$_}\r\n" for sort keys %$rh;
            $out .= "\r\n$rb";

            syswrite($s, $out);

            if (lc($headers{connection} // '') eq 'close') {
                $sel->remove($s);
                delete $buf{$s};
                close $s;
                last;
            }
        }
    }
}
