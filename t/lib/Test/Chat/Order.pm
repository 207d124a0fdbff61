package Test::Chat::Order;

# The ordering contract of PROTOCOL.md section 6, checked on what sessions
# sent and received: sessions that record every frame, pipelined SENDs
# (one write, no waiting between frames), a pump that reads all sessions
# at once, history read back through the REST API, and one check of the
# whole contract that returns what broke.

use strict;
use warnings;

use Exporter 'import';
use IO::Select;
use Time::HiRes qw(time);

use Test::Chat::Util;
use Test::Chat::WebSocket;

our @EXPORT = qw(order_session order_send order_retry order_pump
                 order_settled order_history order_check order_change);

my $serial = 0;


# order_session(user, %stomp_connect_options) -> a recording session
# subscribed to its messages and errors
sub order_session {
    my ($user, %o) = @_;
    my $c = stomp_connect('/ws/chat', user => $user, %o);

    $c->subscribe('/user/queue/messages', 'm')
        or die "order_session: SUBSCRIBE of $user failed\n";
    $c->subscribe('/user/queue/errors', 'e')
        or die "order_session: SUBSCRIBE of $user failed\n";

    $serial++;

    return { c => $c, user => $user, name => "$user.s$serial",
             port => $o{port} // server_port(), sent => [], frames => [],
             count => 0 };
}


# order_send(session, conv, n, %o): n SENDs to conv without waiting, in
# one write. o: receipt (1: each asks a RECEIPT; a number in (0,1): that
# share of them, drawn with rand), cmid (1: each carries a clientMsgId),
# split (1: a write per SEND, so that the server reads them apart), pace
# (seconds between those writes: answers of the first ones may come in
# between, still without waiting for them), also
# (a list of more [session, conv] whose SENDs interleave with these, one
# each in turn)
sub order_send {
    my ($s, $conv, $n, %o) = @_;
    my $w = '';

    if ($o{also}) {
        my @all = ([$s, $conv], @{ $o{also} });
        my %one = (%o, also => undef);
        for (1 .. $n) {
            order_send($_->[0], $_->[1], 1, %one) or return 0 for @all;
        }
        return 1;
    }

    for (1 .. $n) {
        my $k = ++$s->{count};
        my $op = { conv => $conv, k => $k,
                   content => "$s->{name}:$k" };
        my $r = $o{receipt} // 0;

        $op->{receipt} = "$s->{name}:r$k"
            if $r >= 1 || ($r > 0 && rand() < $r);
        $op->{cmid} = "$s->{name}:c$k" if $o{cmid};

        push @{ $s->{sent} }, $op;
        $w .= _frame($op);

        if ($o{split} || $o{pace}) {
            $s->{c}->send_raw($w) or return 0;
            $w = '';
            Time::HiRes::sleep($o{pace}) if $o{pace};
        }
    }

    return length $w ? $s->{c}->send_raw($w) : 1;
}


# order_retry(session, count): the last count SENDs that carry a
# clientMsgId are sent again, as a client does that missed their answers
sub order_retry {
    my ($s, $count) = @_;
    my @ops = grep { $_->{cmid} } @{ $s->{sent} };
    my $w = '';

    @ops = @ops[-$count .. -1] if @ops > $count;

    for my $old (@ops) {
        my $op = { %$old, retry => 1 };
        $op->{receipt} = "$old->{receipt}.retry" if $old->{receipt};
        push @{ $s->{sent} }, $op;
        $w .= _frame($op);
    }

    return $s->{c}->send_raw($w);
}


# order_change(session, conv, n): up to n changes (PROTOCOL.md section 10)
# of the session's own messages of conv that it has seen live (so their
# seqs are known), each with a receipt, in one write: mostly edits (the
# new content "<name>:e<k>"), some deletes; a deleted message is not
# changed again. Returns how many were sent, undef if the write failed.
sub order_change {
    my ($s, $conv, $n) = @_;
    my (@mine, $w);

    for my $f (@{ $s->{frames} }) {
        next unless $f->{command} eq 'MESSAGE'
                    && $f->{headers}{destination} eq '/user/queue/messages';
        my $m = json_decode($f->{body});
        push @mine, $m
            if ($m->{type} // '') eq 'message'
               && $m->{conversationId} eq $conv
               && index($m->{content} // '', "$s->{name}:") == 0
               && !$s->{deleted}{$conv}{ $m->{seq} };
    }

    $w = '';
    my $sent = 0;

    while (@mine && $sent < $n) {
        my $m = splice(@mine, int(rand(@mine)), 1);
        my $k = ++$s->{count};
        my $op = { conv => $conv, k => $k, change => 1,
                   kind => rand() < 0.3 ? 'delete' : 'edit',
                   target => $m->{seq}, target_content => $m->{content},
                   receipt => "$s->{name}:r$k" };
        $op->{content} = "$s->{name}:e$k" if $op->{kind} eq 'edit';
        $s->{deleted}{$conv}{ $m->{seq} } = 1 if $op->{kind} eq 'delete';

        push @{ $s->{sent} }, $op;
        $w .= ws_frame(opcode => 1, payload => stomp_frame('SEND', {
                  destination => "/app/chat.$op->{kind}",
                  'content-type' => 'application/json',
                  receipt => $op->{receipt} },
                  json_encode({ conversationId => $conv, seq => $m->{seq},
                                ($op->{content}
                                 ? (content => $op->{content}) : ()) })));
        $sent++;
    }

    return $sent unless length $w;
    return $s->{c}->send_raw($w) ? $sent : undef;
}


sub _frame {
    my ($op) = @_;
    my %h = (destination => '/app/chat.send',
             'content-type' => 'application/json');

    $h{receipt} = $op->{receipt} if $op->{receipt};

    return ws_frame(opcode => 1, payload => stomp_frame('SEND', \%h,
        json_encode({ conversationId => $op->{conv},
                      content => $op->{content},
                      ($op->{cmid} ? (clientMsgId => $op->{cmid}) : ()) })));
}


# order_pump(sessions, seconds, done): reads every session's frames until
# done->() is true (checked whenever frames came) or the time is up.
# Returns true if done.
sub order_pump {
    my ($sessions, $secs, $done) = @_;
    my $until = time + $secs;
    my $first = 1;

    while (1) {
        my $got = 0;

        for my $s (grep { !$_->{closed} } @$sessions) {
            while (my $f = $s->{c}->stomp_recv(0)) {
                push @{ $s->{frames} }, $f;
                $got++;
            }

            # closed by the server (a reload says 1001) or the peer
            $s->{closed} = 1 if $s->{c}{eof} || $s->{c}->close_code;
        }

        return 1 if $done && ($got || $first) && $done->{cb}->();
        $first = 0;

        my $left = $until - time;
        return 0 if $left <= 0;

        my $sel = IO::Select->new(map { $_->{c}->sock } grep {
            !$_->{closed} } @$sessions);
        last unless $sel->count;
        $sel->can_read($left < 0.2 ? $left : 0.2);
    }

    return 0;
}


# answers: { receipt-id => 'ok' | error code } of a session
sub _answers {
    my ($s) = @_;
    my %a;

    for my $f (@{ $s->{frames} }) {
        if ($f->{command} eq 'RECEIPT') {
            push @{ $a{ $f->{headers}{'receipt-id'} } }, 'ok';

        } elsif ($f->{command} eq 'MESSAGE'
                 && $f->{headers}{destination} eq '/user/queue/errors')
        {
            my $j = json_decode($f->{body});
            push @{ $a{ $j->{receiptId} } }, $j->{code}
                if defined $j->{receiptId};
        }
    }

    return \%a;
}


# order_settled(sessions): a done callback for order_pump: every SEND
# that asked a RECEIPT was answered
sub order_settled {
    my ($sessions) = @_;

    return { cb => sub {
        for my $s (grep { !$_->{closed} } @$sessions) {
            my $a = _answers($s);
            for my $op (@{ $s->{sent} }) {
                return 0 if $op->{receipt} && !$a->{ $op->{receipt} };
            }
        }
        return 1;
    } };
}


# order_history(user, conv) -> the whole history, oldest first (paged
# back from the newest), or undef and the failure
sub order_history {
    my ($user, $conv) = @_;
    my (@all, $before);

    for (1 .. 1000) {
        my $q = 'limit=200' . ($before ? "&before=$before" : '');
        my ($st, $j) = api(GET => "/conversations/$conv/messages?$q", $user);
        return (undef, "history of $conv: status $st") unless $st == 200;

        my @page = sort { $a->{seq} <=> $b->{seq} } @{ $j->{messages} };
        last unless @page;
        unshift @all, @page;
        $before = $page[0]{seq};
        last if $before <= 1;
    }

    return \@all;
}


# order_check(sessions, convs, %o) -> the list of what broke (empty: the
# contract held). convs: { conv => a member's userId } for the history
# (at most 200 messages each: older ones come from PostgreSQL only once
# chat-persist wrote them). A session closed by the server ({closed}) may
# leave SENDs unanswered.
# o{lossy}: live delivery may have gaps (a pub/sub link was cut): only
# order is checked live, completeness in history.
sub order_check {
    my ($sessions, $convs, %o) = @_;
    my (@bad, %hist, %by_content);

    for my $conv (sort keys %$convs) {
        my ($h, $err) = order_history($convs->{$conv}, $conv);
        if (!$h) {
            push @bad, $err;
            next;
        }

        $hist{$conv} = $h;
        my @seqs = map { $_->{seq} } @$h;
        my $want = join ',', 1 .. scalar @seqs;
        push @bad, "history of $conv: seqs are not 1.." . scalar(@seqs)
                   . " (" . _short(@seqs) . ")"
            unless join(',', @seqs) eq $want;

        my %seen;
        for my $m (@$h) {
            next unless ($m->{type} // 'message') eq 'message';
            push @bad, "history of $conv: \"$m->{content}\" twice"
                if !$m->{deleted} && $seen{ $m->{content} }++;
            $by_content{$conv}{ $m->{content} } = $m->{seq};
        }

        push @bad, _check_changes($conv, $h);
    }

    for my $s (@$sessions) {
        my $who = "$s->{name} (port $s->{port})";
        my $a = _answers($s);
        my (%last_seq, %live);

        # every SEND that asked a RECEIPT got one answer; RECEIPTs in the
        # order of the SENDs, per conversation
        my %sent_order;
        for my $op (@{ $s->{sent} }) {
            next unless $op->{receipt};
            my $n = scalar @{ $a->{ $op->{receipt} } || [] };
            push @bad, "$who: SEND $op->{content} ($op->{receipt}) got "
                       . ($n ? "$n answers" : 'no answer')
                unless $n == 1 || ($n == 0 && $s->{closed});
            push @{ $sent_order{ $op->{conv} } }, $op->{receipt};
        }

        my %rank;
        for my $conv (keys %sent_order) {
            my $i = 0;
            $rank{$_} = [$conv, $i++] for @{ $sent_order{$conv} };
        }

        my %at;
        for my $f (@{ $s->{frames} }) {
            my $rid;
            if ($f->{command} eq 'RECEIPT') {
                $rid = $f->{headers}{'receipt-id'};
            } elsif ($f->{command} eq 'MESSAGE'
                     && $f->{headers}{destination} eq '/user/queue/errors')
            {
                # rate_limited is refused before it is queued (PROTOCOL.md
                # §6): it is answered at once, outside the order
                my $j = json_decode($f->{body});
                $rid = $j->{receiptId}
                    unless ($j->{code} // '') eq 'rate_limited';
            }
            next unless defined $rid && $rank{$rid};
            my ($conv, $i) = @{ $rank{$rid} };
            push @bad, "$who: answer to $rid came after a later SEND's"
                if defined $at{$conv} && $i < $at{$conv};
            $at{$conv} = $i if !defined $at{$conv} || $i > $at{$conv};
        }

        # live: increasing seq per conversation, no duplicate, the content
        # history has at that seq; without lossy, no gap either
        for my $f (@{ $s->{frames} }) {
            next unless $f->{command} eq 'MESSAGE'
                        && $f->{headers}{destination}
                           eq '/user/queue/messages';
            my $m = json_decode($f->{body});
            my $conv = $m->{conversationId};
            next unless $hist{$conv};

            my $prev = $last_seq{$conv};
            if (defined $prev && $m->{seq} <= $prev) {
                push @bad, "$who: live seq $m->{seq} after $prev in $conv";
            } elsif (!$o{lossy} && defined $prev && $m->{seq} != $prev + 1) {
                push @bad, "$who: live gap $prev -> $m->{seq} in $conv";
            }
            $last_seq{$conv} = $m->{seq};

            # the same entry; the same content unless changed since
            my $hm = $hist{$conv}[ $m->{seq} - 1 ];
            my $type = $m->{type} // 'message';
            my $same = $hm && $hm->{messageId} eq $m->{messageId}
                && ($hm->{type} // 'message') eq $type
                && (($type eq 'message' && ($hm->{editedAt}
                                            || $hm->{deleted}))
                    || ($type eq 'message.edited' && $hm->{content} eq '')
                    || ($hm->{content} // '') eq ($m->{content} // ''));
            push @bad, "$who: live seq $m->{seq} of $conv is $type"
                       . " \"" . ($m->{content} // '') . "\", history says "
                       . ($hm ? ($hm->{type} // 'message') . ' "'
                                . ($hm->{content} // '') . '"'
                              : 'nothing')
                unless $same;
        }

        # a change answered ok is in history; its message was found by
        # its first content
        for my $op (grep { $_->{change} } @{ $s->{sent} }) {
            my $h = $hist{ $op->{conv} } or next;
            $by_content{ $op->{conv} }{ $op->{target_content} } //=
                $op->{target};
            next unless (($a->{ $op->{receipt} } || [])->[0] // '') eq 'ok';
            my $type = $op->{kind} eq 'edit' ? 'message.edited'
                                             : 'message.deleted';
            push @bad, "$who: $type of seq $op->{target} in $op->{conv}"
                       . " (#$op->{k}) answered ok, not in history"
                unless grep { ($_->{type} // '') eq $type
                              && $_->{target} == $op->{target}
                              && ($type ne 'message.edited'
                                  || $_->{content} eq $op->{content}
                                  || $_->{content} eq '') } @$h;
        }

        # per-sender order, and every RECEIPTed message in history
        my %last_mine;
        for my $op (@{ $s->{sent} }) {
            next if $op->{retry} || $op->{change};
            my $conv = $op->{conv};
            next unless $hist{$conv};
            my $seq = $by_content{$conv}{ $op->{content} };
            my $ans = $op->{receipt} ? ($a->{ $op->{receipt} } || [])->[0]
                                     : undef;

            if (!defined $seq) {
                push @bad, "$who: RECEIPTed $op->{content} not in history"
                    if defined $ans && $ans eq 'ok';
                next;
            }

            push @bad, "$who: $op->{content} (sent as #$op->{k}) got seq $seq,"
                       . " before its earlier SEND's $last_mine{$conv}"
                if defined $last_mine{$conv} && $seq <= $last_mine{$conv};
            $last_mine{$conv} = $seq;
        }

        # a retry is answered like the first time and adds nothing
        for my $op (grep { $_->{retry} } @{ $s->{sent} }) {
            next unless $op->{receipt};
            my $first = $a->{ $op->{receipt} =~ s/\.retry\z//r } || [];
            my $again = $a->{ $op->{receipt} } || [];
            push @bad, "$who: retry of $op->{content} answered "
                       . ($again->[0] // 'nothing') . ' after '
                       . ($first->[0] // 'nothing')
                if ($first->[0] // '') eq 'ok'
                   && ($again->[0] // '') ne 'ok';
        }
    }

    return @bad;
}


# a history's changes against its messages' states: every change targets
# an earlier message; a deleted message has no content left, in it or in
# its edits; an edited one has its newest edit's content and editedAt
sub _check_changes {
    my ($conv, $h) = @_;
    my (@bad, %edits, %deleted);

    for my $m (@$h) {
        my $type = $m->{type} // 'message';
        next if $type eq 'message';
        my $t = $m->{target} // 0;
        my $tm = $t >= 1 ? $h->[$t - 1] : undef;
        push @bad, "history of $conv: $type at $m->{seq} targets $t,"
                   . " not an earlier message"
            unless $tm && $t < $m->{seq}
                   && ($tm->{type} // 'message') eq 'message';
        push @{ $edits{$t} }, $m if $type eq 'message.edited';
        $deleted{$t} = 1 if $type eq 'message.deleted';
    }

    for my $m (grep { ($_->{type} // 'message') eq 'message' } @$h) {
        my $e = $edits{ $m->{seq} } || [];
        if ($deleted{ $m->{seq} } || $m->{deleted}) {
            push @bad, "history of $conv: $m->{seq} deleted without a"
                       . " tombstone (or the other way)"
                unless $deleted{ $m->{seq} } && $m->{deleted}
                       && $m->{content} eq '';
            push @bad, "history of $conv: an edit of deleted $m->{seq}"
                       . " keeps its content"
                if grep { $_->{content} ne '' } @$e;
        } elsif (@$e) {
            push @bad, "history of $conv: $m->{seq} is \"$m->{content}\","
                       . " its newest edit says \"$e->[-1]{content}\""
                unless $m->{content} eq $e->[-1]{content} && $m->{editedAt};
        } elsif ($m->{editedAt}) {
            push @bad, "history of $conv: $m->{seq} edited, no edit of it";
        }
    }

    return @bad;
}


sub _short {
    my @l = @_;
    return join(',', @l) if @l <= 12;
    return join(',', @l[0 .. 5]) . ',...,' . join(',', @l[-5 .. -1]);
}


1;
