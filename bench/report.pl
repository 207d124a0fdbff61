#!/usr/bin/perl
# report.pl: the summary of a make bench run: one table of every result
# chat_bench (and persist.pl) wrote, then ngx_chat's ratios to the others.
#
# usage: perl bench/report.pl MACHINE_FILE RESULT.json...

use strict;
use warnings;
use JSON::PP;

my ($machine, @files) = @ARGV;
my %r;          # "scenario label" -> system -> result
my %cap;        # capacity sweeps: "scenario label" -> system -> result
my %floor;      # bench/floor: group -> the best of its runs (batches)
my %floors;     # bench/floor: group -> batch -> result

if ($machine && open(my $fh, '<', $machine)) {
    print "machine:\n";
    print "  $_" while <$fh>;
    print "\n";
}

for my $f (@files) {
    next unless -s $f;
    open(my $fh, '<', $f) or next;
    local $/;
    my $j = eval { decode_json(<$fh>) } or next;
    if (($j->{tool} // '') eq 'floor') {
        my $g = $j->{params}{group};
        $floors{$g}{$j->{params}{batch} // 1} = $j;
        $floor{$g} = $j
            if !$floor{$g} || $j->{throughput}{deliveries_per_s}
                              > $floor{$g}{throughput}{deliveries_per_s};
        next;
    }
    if ($j->{sweep}) {
        my $l = $j->{label} // '';
        $l =~ s/-?sweep$//;
        $cap{$j->{scenario} . ($l ne '' ? " $l" : '')}{$j->{system}} = $j;
        next;
    }
    my $key = $j->{scenario} . ($j->{label} ? " $j->{label}" : '');
    $r{$key}{$j->{system}} = $j;
}

sub lat {
    my ($j, $what) = @_;
    my $l = $j->{latency_ms}{$what} or return '-';
    return '-' unless $l->{count};
    return sprintf('%.2f/%.2f/%.1f', $l->{p50}, $l->{p99}, $l->{max});
}

# the figure a scenario is judged by, and whether higher is better
sub key_figure {
    my ($sc, $j) = @_;
    return ($j->{memory}{bytes_per_session}, 0, 'B/session')
        if $sc eq 'density';
    return ($j->{sessions}{per_s}, 1, 'sessions/s') if $sc eq 'storm';
    return ($j->{throughput}{msg_per_s}, 1, 'rows/s') if $sc eq 'persist';
    return ($j->{throughput}{deliveries_per_s}, 1, 'deliveries/s');
}

my @order = ('density', 'direct', 'fanout g10', 'fanout g100',
             'fanout g1000', 'storm', 'persist');
my @keys = ((grep { $r{$_} } @order),
            sort grep { my $k = $_; !grep { $_ eq $k } @order } keys %r);

printf "%-13s %-9s %7s %11s %13s %12s %21s %21s\n", 'scenario', 'system',
       'ready', 'msg/s', 'deliveries/s', 'B/session', 'MESSAGE p50/p99/max',
       'RECEIPT p50/p99/max';

for my $k (@keys) {
    my @known = qw(ngx_chat rabbitmq nchan mosquitto socketio);
    my @sys = (@known, grep { my $s = $_; !grep { $_ eq $s } @known }
                         sort keys %{$r{$k}});
    for my $sys (@sys) {
        my $j = $r{$k}{$sys} or next;
        my $per = $k eq 'storm'
                  ? sprintf('%.0f/s', $j->{sessions}{per_s})
                  : $k eq 'density'
                  ? sprintf('%.0f', $j->{memory}{bytes_per_session})
                  : '-';
        printf "%-13s %-9s %7s %11.0f %13.0f %12s %21s %21s\n", $k, $sys,
               $j->{sessions}{ready} // '-',
               $j->{throughput}{msg_per_s} // 0,
               $j->{throughput}{deliveries_per_s} // 0,
               $per, lat($j, 'message'), lat($j, 'receipt');
    }
}

print "\nngx_chat compared (ratio > 1: ngx_chat ahead):\n";

for my $k (@keys) {
    my ($sc) = split / /, $k;
    my $c = $r{$k}{ngx_chat} or next;
    my ($cv, $up, $unit) = key_figure($sc, $c);
    for my $o (qw(rabbitmq nchan mosquitto socketio)) {
        my $j = $r{$k}{$o} or next;
        my ($ov) = key_figure($sc, $j);
        next unless $cv && $ov;
        my $ratio = $up ? $cv / $ov : $ov / $cv;
        printf "  %-13s vs %-9s %8.2fx  (%.0f vs %.0f %s)\n", $k, $o,
               $ratio, $cv, $ov, $unit;
        my $cl = $c->{latency_ms}{message};
        my $ol = $j->{latency_ms}{message};
        if ($cl && $ol && $cl->{count} && $ol->{count} && $cl->{p99} > 0) {
            printf "  %-13s vs %-9s %8.2fx  (MESSAGE p99 %.2f vs %.2f ms)\n",
                   '', $o, $ol->{p99} / $cl->{p99}, $cl->{p99}, $ol->{p99};
        }
    }
}


# --- capacity: the sweeps (chat_bench --sweep) and the floor (bench/floor)

exit 0 unless %cap || %floor;

my @csys = ('ngx_chat', 'rabbitmq', 'nchan');

# "offered" of a capacity, with ">=" when the sweep's last rate passed
sub cap_rate {
    my ($j) = @_;
    my $c = $j->{capacity} or return '< ' . ($j->{params}{rates}[0] // '?');
    return ($c->{at_least} ? '>=' : '') . sprintf('%.0f', $c->{rate});
}

my ($step) = map { $_->{params}{step_s} } map { values %$_ } values %cap;
printf "\ncapacity: the highest offered rate (msg/s) carried with MESSAGE p99 <"
       . " %.0f ms (and RECEIPT\np99 where the system answers with receipts),"
       . " steps of %s s; fan-out also as a fraction\nof the floor (the best"
       . " of its runs: one frame per write, or several):\n",
       (map { $_->{params}{limit_ms} } map { values %$_ } values %cap)[0]
       // 50, $step // '-';
printf "%-13s %-9s %9s %9s %12s %15s %8s %6s %7s  %s\n", 'scenario',
       'system', 'offered', 'msg/s', 'deliveries/s', 'MESSAGE p50/p99',
       'RCPT p99', 'tool', 'floor', 'next rate: why not';

my @ckeys = ((grep { $cap{$_} } 'direct', 'fanout g10', 'fanout g100',
              'fanout g1000'),
             sort grep { !/^(direct|fanout g10|fanout g100|fanout g1000)$/ }
             keys %cap);

for my $k (@ckeys) {
    my ($g) = $k =~ /^fanout g(\d+)/;
    my @sys = (@csys, grep { my $x = $_; !grep { $_ eq $x } @csys }
               sort keys %{$cap{$k}});
    for my $sys (@sys) {
        my $j = $cap{$k}{$sys} or next;
        my $c = $j->{capacity};
        my $f = $j->{failed};
        my $frac = '-';
        if ($c && $g && $floor{$g}
            && $floor{$g}{throughput}{deliveries_per_s})
        {
            $frac = sprintf('%.2f', $c->{deliveries_per_s}
                                    / $floor{$g}{throughput}{deliveries_per_s});
        }
        printf "%-13s %-9s %9s %9.0f %12.0f %15s %8s %6s %7s  %s\n", $k, $sys,
               cap_rate($j), $c ? $c->{msg_per_s} : 0,
               $c ? $c->{deliveries_per_s} : 0,
               $c ? sprintf('%.2f/%.2f', $c->{message_p50}, $c->{message_p99})
                  : '-',
               $c && $j->{params}{receipts_judged}
                  ? sprintf('%.2f', $c->{receipt_p99}) : '-',
               $c ? sprintf('%.2f', $c->{cpu_self}) : '-', $frac,
               $f ? sprintf('%.0f: %s (tool %.2f%s)', $f->{rate}, $f->{why},
                            $f->{cpu_self},
                            $f->{self_saturated} ? ', saturated' : '')
                  : $c ? 'none: the last rate' : '-';
    }
    floor_rows($k, $g) if $g;
}

for my $g (sort { $a <=> $b } keys %floors) {
    floor_rows("fanout g$g", $g) unless $cap{"fanout g$g"};
}

# the floor's runs of group g: deliveries/s, its CPU, the frames per write
sub floor_rows {
    my ($k, $g) = @_;
    my $best = $floor{$g} or return;
    for my $b (sort { $a <=> $b } keys %{$floors{$g}}) {
        my $f = $floors{$g}{$b};
        printf "%-13s %-9s %9s %9s %12.0f %15s %8s %6.2f %7.2f  %s\n", $k,
               'floor', '-', '-', $f->{throughput}{deliveries_per_s}, '-',
               '-', $f->{cpu}{senders} + $f->{cpu}{receivers},
               $f->{throughput}{deliveries_per_s}
               / ($best->{throughput}{deliveries_per_s} || 1),
               "no protocol, $b frame(s) per write";
    }
}

# the fixed-rate fan-out runs against the floor too
my @fixed = grep { /^fanout g(\d+)$/ && $floor{$1} } sort keys %r;

if (@fixed) {
    print "\nfan-out at the fixed offered rate, as a fraction of the floor:\n";
    for my $k (@fixed) {
        my ($g) = $k =~ /g(\d+)$/;
        my $fl = $floor{$g}{throughput}{deliveries_per_s} or next;
        for my $sys (sort keys %{$r{$k}}) {
            my $d = $r{$k}{$sys}{throughput}{deliveries_per_s} // 0;
            printf "  %-13s %-9s %12.0f of %.0f deliveries/s: %.2f\n", $k,
                   $sys, $d, $fl, $d / $fl;
        }
    }
}

print "\nngx_chat compared at capacity (ratio > 1: ngx_chat ahead):\n";

for my $k (@ckeys) {
    my $c = $cap{$k}{ngx_chat} or next;
    for my $o (grep { $_ ne 'ngx_chat' } sort keys %{$cap{$k}}) {
        my $j = $cap{$k}{$o};
        my $cv = $c->{capacity} ? $c->{capacity}{deliveries_per_s} : 0;
        my $ov = $j->{capacity} ? $j->{capacity}{deliveries_per_s} : 0;
        if ($cv && $ov) {
            printf "  %-13s vs %-9s %8.2fx  (%.0f vs %.0f deliveries/s%s)\n",
                   $k, $o, $cv / $ov, $cv, $ov,
                   ($c->{capacity}{at_least} || $j->{capacity}{at_least})
                   ? '; ">=": the sweep\'s last rate, a lower bound' : '';
        } else {
            printf "  %-13s vs %-9s %9s  (offered %s vs %s msg/s)\n", $k, $o,
                   '-', cap_rate($c), cap_rate($j);
        }
    }
}
