#!/usr/bin/env perl
# chat-cli.pl: a small interactive chat client for trying ngx_chat by hand
# (STOMP over WebSocket plus the REST API), built on the test clients.
#
# usage: scripts/chat-cli.pl [--port 8080] [--secret S] [--token JWT] USER
#
# commands (anything else is sent to the current conversation):
#   /direct USER          open (or create) a direct conversation, switch to it
#   /group NAME U1 U2..   create a group conversation, switch to it
#   /use ID               switch to a conversation
#   /list                 your conversations
#   /history [N]          the last N messages of the current conversation
#   /add USER             add a member to the current (group) conversation
#   /typing               send a typing event
#   /read SEQ             mark everything up to SEQ as read
#   /presence USER        subscribe to a user's presence
#   /quit

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";
use IO::Select;
use Getopt::Long;

use Test::Chat::Util;
use Test::Chat::WebSocket;

my $port = $ENV{CHAT_PORT} // 8080;
my $secret = $ENV{CHAT_JWT_SECRET} // 'ngx-chat-dev-secret-change-me';
my ($token, $path) = (undef, '/ws/chat');

GetOptions('port=i' => \$port, 'secret=s' => \$secret,
           'token=s' => \$token, 'path=s' => \$path)
    or die "usage: $0 [--port P] [--secret S] [--token JWT] USER\n";

my $user = shift or die "usage: $0 [--port P] [--secret S] USER\n";
$token //= make_token($user, secret => $secret, ttl => 86400);
$| = 1;

my $c = eval { stomp_connect($path, port => $port, token => $token) }
    or die "cannot connect to ws://127.0.0.1:$port$path: $@";

my $hello = $c->{connected}{headers};
print "connected as $hello->{'user-name'} (session $hello->{session},"
    . " $hello->{server})\n";

my $n = 0;
for my $d (qw(/user/queue/messages /user/queue/receipts /user/queue/typing
              /user/queue/events /user/queue/errors))
{
    $c->subscribe($d, $n++, 'auto') or die "cannot subscribe to $d\n";
}

my $current;

sub rest {
    my ($method, $p, $data) = @_;
    my ($st, $j) = api($method, $p, undef, $data, token => $token,
                       port => $port);
    if ($st !~ /^2/) {
        my $e = ref $j ? json_encode($j) : ($j // '');
        print "! $method $p: $st $e\n";
        return undef;
    }
    return $j // {};
}

sub show {
    my ($f) = @_;
    my $d = $f->{headers}{destination} // '';
    my $j = json_decode($f->{body}) // {};
    my $t = $j->{type} // '';

    if ($t eq 'message') {
        my $mark = ($current // '') eq $j->{conversationId} ? '' :
                   " [$j->{conversationId}]";
        print "#$j->{seq}$mark <$j->{senderId}> $j->{content}\n";
    } elsif ($t eq 'typing') {
        print "... $j->{userId} is typing\n";
    } elsif ($t eq 'error') {
        print "! $j->{code}: $j->{message}\n";
    } else {
        print "* $d $f->{body}\n";
    }
}

sub command {
    my ($line) = @_;

    if ($line =~ m{^/direct\s+(\S+)}) {
        my $j = rest(POST => '/conversations',
                     { type => 'direct', members => [$1] }) or return;
        $current = $j->{conversationId};
        print "now in $current (direct with $1)\n";
    } elsif ($line =~ m{^/group\s+(\S+)\s+(.+)}) {
        my $j = rest(POST => '/conversations',
                     { type => 'group', name => $1,
                       members => [split ' ', $2] }) or return;
        $current = $j->{conversationId};
        print "now in $current (group $1)\n";
    } elsif ($line =~ m{^/use\s+(\S+)}) {
        $current = $1;
    } elsif ($line =~ m{^/list}) {
        my $j = rest(GET => '/conversations') or return;
        for (@{ $j->{conversations} || [] }) {
            printf "%s %-6s %-12s members:%s unread:%d\n",
                $_->{conversationId}, $_->{type}, $_->{name} // '',
                join(',', @{ $_->{members} || [] }), $_->{unread} // 0;
        }
    } elsif ($line =~ m{^/history\s*(\d*)}) {
        return print "! no conversation: /direct USER first\n"
            unless $current;
        my $j = rest(GET => "/conversations/$current/messages?limit="
                             . ($1 || 20)) or return;
        print "#$_->{seq} <$_->{senderId}> $_->{content} ($_->{status})\n"
            for @{ $j->{messages} || [] };
    } elsif ($line =~ m{^/add\s+(\S+)}) {
        rest(POST => "/conversations/$current/members", { userId => $1 });
    } elsif ($line =~ m{^/typing}) {
        $c->send_json('/app/chat.typing', { conversationId => $current });
    } elsif ($line =~ m{^/read\s+(\d+)}) {
        $c->send_json('/app/chat.read',
                      { conversationId => $current, seq => $1 + 0 });
    } elsif ($line =~ m{^/presence\s+(\S+)}) {
        $c->subscribe("/topic/presence.$1", $n++, 'auto', no_receipt => 1);
    } elsif ($line =~ m{^/quit}) {
        $c->disconnect;
        exit 0;
    } elsif ($line =~ m{^/}) {
        print "! unknown command (see the top of $0)\n";
    } elsif ($line =~ /\S/) {
        return print "! no conversation: /direct USER first\n"
            unless $current;
        $c->send_json('/app/chat.send',
                      { conversationId => $current, content => $line,
                        clientMsgId => 'cli-' . time . '-' . $n++ });
    }
}

my $sel = IO::Select->new(\*STDIN, $c->sock);

while (1) {
    while (my $f = $c->stomp_recv(0)) {
        if ($f->{command} eq 'MESSAGE') {
            show($f);
        } elsif ($f->{command} eq 'ERROR') {
            print "! ERROR $f->{headers}{message}\n";
        }
    }

    if ($c->{eof} || defined $c->close_code) {
        print "connection closed\n";
        exit 1;
    }

    for my $fh ($sel->can_read(1)) {
        next unless $fh == \*STDIN;
        my $line = <STDIN>;
        exit 0 unless defined $line;
        chomp $line;
        command($line);
    }
}
