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
    my @sys = (qw(ngx_chat rabbitmq nchan),
               grep { !/^(ngx_chat|rabbitmq|nchan)$/ } sort keys %{$r{$k}});
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
    for my $o (qw(rabbitmq nchan)) {
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
