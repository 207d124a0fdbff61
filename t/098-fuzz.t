# 098-fuzz.t: every libFuzzer target of fuzz/ (fuzz/fuzz_<target>.c) runs
# a few seconds from its seed corpus, so that none rots: a crash, a
# sanitizer report, a broken property or a target that no longer builds
# fails. make fuzz runs them longer (fuzz/fuzz.mk).
#
#   CHAT_FUZZ_BIN   where make fuzz-build put them (build/fuzz)
#   FUZZ_SHORT      seconds per target (3)

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Test::More;

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $bin = $ENV{CHAT_FUZZ_BIN} // "$root/build/fuzz";
my $secs = $ENV{FUZZ_SHORT} // 3;

my @targets = sort map { m{/fuzz_(\w+)\.c$} ? $1 : () }
              glob("$root/fuzz/fuzz_*.c");

if (system('command -v clang >/dev/null 2>&1') != 0) {
    plan skip_all => 'clang is not installed (make deps installs clang and'
                     . ' libclang-rt-dev): the fuzz targets cannot be built';
}

plan tests => 1 + scalar @targets;

ok(@targets >= 7, 'the fuzz targets are there: ' . join(' ', @targets));

# what the short runs find is thrown away: each run starts from the seeds
my $scratch = tempdir('chat-fuzz-XXXXXX', TMPDIR => 1, CLEANUP => 1);

for my $t (@targets) {
    my $out = `sh '$root/fuzz/run.sh' $secs '$bin' '$scratch' $t 2>&1`;
    my $rc = $?;
    chomp $out;

    ok($rc == 0 && $out =~ /^ok - /m, "fuzz_$t: ${secs}s from its seeds")
        or diag($out);
    note($out);
}
