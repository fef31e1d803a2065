# The remote helper of zo-worker (worker/src/exec/helper.rs describes the frames it speaks):
# started once per SSH master (or locally) as `perl -e PROGRAM SPILL_OVER`, it starts task
# scripts in bash sessions of their own, relays their stdio in frames, kills their process
# trees on request, at their end (by their ZO_TASK_TOKEN) and when its stdin closes.
# Argument: SPILL_OVER, the size past which a script or prompt goes through a 0600 file in a
# 0700 directory instead of the environment (default 65536).
use strict; use warnings; use POSIX (); use Fcntl;
$SIG{PIPE} = 'IGNORE'; $SIG{CHLD} = sub {};
binmode STDIN; binmode STDOUT;
my $spill_over = (@ARGV && $ARGV[0] =~ /^\d+$/) ? $ARGV[0] : 65536;
my (%kid, %fd, %pid2id, %status, %kill, @ended, $dir); my $swept = time;
my $in = ''; my $closing = 0;
sub out { my $b = pack('aNN', $_[0], $_[1], length $_[2]) . $_[2];
  while (length $b) { my $n = syswrite(STDOUT, $b);
    if (!defined $n) { next if $!{EINTR} || $!{EAGAIN}; bye() } substr($b, 0, $n) = '' } }
sub bye { kill('TERM', -$_->{pid}) for values %kid; sleep 1 if %kid;
  kill('KILL', -$_->{pid}) for values %kid; sweep(map({ $_->{tok} } values %kid), @ended);
  if ($dir) { unlink glob("$dir/*"); rmdir $dir } POSIX::_exit(0) }
sub privdir { return $dir if $dir; my $base = $ENV{TMPDIR} || '/tmp';
  for (1 .. 5) { my $d = "$base/zo-helper-$$-" . int(rand(1e9)); if (mkdir($d, 0700)) { $dir = $d; return $d } } return undef }
sub spill { my ($name, $text) = @_; my $d = privdir() // return undef; my $f = "$d/$name";
  sysopen(my $h, $f, O_WRONLY | O_CREAT | O_EXCL, 0600) or return undef; my $off = 0;
  while ($off < length $text) { my $n = syswrite($h, $text, 1 << 20, $off); return undef unless defined $n; $off += $n }
  close $h or return undef; return $f }
sub sweep { my %want = map { ("ZO_TASK_TOKEN=$_" => 1) } @_; return unless %want;
  for my $round (1 .. 3) { my $hit = 0;
    opendir(my $d, '/proc') or return;
    for my $p (grep { /^\d+$/ && $_ != $$ } readdir $d) {
      open(my $e, '<', "/proc/$p/environ") or next; local $/; my $env = <$e>; close $e; next unless defined $env;
      for (split /\0/, $env) { if ($want{$_}) { kill('KILL', $p); $hit = 1; last } } }
    closedir $d; last unless $hit } }
sub failed { my ($id, $msg) = @_; out('R', $id, "zo helper: $msg\n"); out('o', $id, ''); out('r', $id, ''); out('X', $id, pack('l>', 126)) }
sub start { my ($id, $p) = @_;
  my ($sl) = unpack('N', $p); my $script = substr($p, 4, $sl);
  my $hp = substr($p, 4 + $sl, 1); my $prompt = substr($p, 5 + $sl);
  my ($ir, $iw, $or, $ow, $er, $ew);
  pipe($ir, $iw) && pipe($or, $ow) && pipe($er, $ew) or return failed($id, "pipe: $!");
  my $tok = "$$-$id-" . int(rand(1e9));
  # Long text goes through private files: one environment string is limited to 128 KiB.
  my ($sf, $pf) = ('', '');
  if (length $script > $spill_over) { $sf = spill("s-$id", $script) // return failed($id, "cannot write the script to a private file: $!") }
  if ($hp eq '1' && length $prompt > $spill_over) { $pf = spill("p-$id", $prompt) // return failed($id, "cannot write the prompt to a private file: $!") }
  my $pid = fork; defined $pid or return failed($id, "fork: $!");
  if (!$pid) { POSIX::setsid();
    open(STDIN, '<&', $ir); open(STDOUT, '>&', $ow); open(STDERR, '>&', $ew);
    $SIG{PIPE} = 'DEFAULT'; $SIG{CHLD} = 'DEFAULT';
    if ($hp eq '1' && !$pf) { $ENV{ZO_PROMPT} = $prompt } else { delete $ENV{ZO_PROMPT} }
    if ($pf) { $ENV{ZO_PROMPT_FILE} = $pf } else { delete $ENV{ZO_PROMPT_FILE} }
    if ($sf) { $ENV{ZO_SCRIPT_FILE} = $sf; delete $ENV{ZO_SCRIPT} } else { $ENV{ZO_SCRIPT} = $script; delete $ENV{ZO_SCRIPT_FILE} }
    $ENV{ZO_TASK_TOKEN} = $tok;
    exec('bash', '-c', 'if [ -n "${ZO_SCRIPT_FILE:-}" ]; then IFS= read -r -d "" zo_s < "$ZO_SCRIPT_FILE"; rm -f -- "$ZO_SCRIPT_FILE"; else zo_s=$ZO_SCRIPT; fi; unset ZO_SCRIPT ZO_SCRIPT_FILE; eval "$zo_s"') or print STDERR "zo helper: cannot run bash: $!\n"; POSIX::_exit(127) }
  close $ir; close $ow; close $ew;
  fcntl($iw, F_SETFL, fcntl($iw, F_GETFL, 0) | O_NONBLOCK);
  $kid{$id} = { pid => $pid, tok => $tok, files => [grep { $_ } $sf, $pf], iw => $iw, ib => '', ie => 0, open => 2 }; $pid2id{$pid} = $id;
  $fd{fileno $or} = [$id, 'o', $or]; $fd{fileno $er} = [$id, 'r', $er] }
sub feed { my $c = shift; return unless $c->{iw};
  while (length $c->{ib}) { my $n = syswrite($c->{iw}, $c->{ib});
    if (!defined $n) { return if $!{EAGAIN} || $!{EINTR}; $c->{ib} = ''; $c->{ie} = 1; last }
    substr($c->{ib}, 0, $n) = '' }
  if ($c->{ie} && !length $c->{ib}) { close $c->{iw}; $c->{iw} = undef } }
sub frame { my ($t, $id, $p) = @_; my $c = $kid{$id};
  if ($t eq 'S') { start($id, $p) }
  elsif ($t eq 'I') { if ($c && $c->{iw}) { $c->{ib} .= $p; feed($c) } }
  elsif ($t eq 'E') { if ($c) { $c->{ie} = 1; feed($c) } }
  elsif ($t eq 'K') { if ($c) { kill('TERM', -$c->{pid}); $kill{$c->{pid}} = [time + 2, $c->{tok}] } } }
out('H', 0, 'zo-helper 1');
while (1) {
  my ($r, $w) = ('', '');
  vec($r, 0, 1) = 1;
  vec($r, $_, 1) = 1 for keys %fd;
  for (values %kid) { vec($w, fileno $_->{iw}, 1) = 1 if $_->{iw} && length $_->{ib} }
  my $wait = (grep { !$_->{open} } values %kid) ? 0.01 : %kill ? 0.25 : @ended ? 1 : undef;
  my $n = select($r, $w, undef, $wait);
  if ($n > 0) {
    if (vec($r, 0, 1)) { my $got = sysread(STDIN, $in, 262144, length $in);
      bye() if defined $got && $got == 0 || !defined $got && !$!{EINTR} && !$!{EAGAIN} }
    while (length $in >= 9) { my ($t, $id, $len) = unpack('aNN', $in); last if length $in < 9 + $len;
      my $p = substr($in, 9, $len); substr($in, 0, 9 + $len) = ''; frame($t, $id, $p) }
    for my $f (keys %fd) { next unless vec($r, $f, 1); my ($id, $tag, $fh) = @{$fd{$f}};
      my $got = sysread($fh, my $b, 65536);
      if ($got) { out(uc $tag, $id, $b) }
      elsif (defined $got || !$!{EINTR} && !$!{EAGAIN}) { close $fh; delete $fd{$f}; out($tag, $id, ''); $kid{$id}{open}-- } }
    for (values %kid) { feed($_) if $_->{iw} && length $_->{ib} && vec($w, fileno $_->{iw}, 1) }
  }
  while ((my $p = waitpid(-1, POSIX::WNOHANG())) > 0) { $status{$p} = $?;
    # The task's shell ended: what it left in its session goes now, what escaped it at the next sweep.
    if (exists $pid2id{$p}) { kill('KILL', -$p); my $c = $kid{$pid2id{$p}}; if ($c) { push @ended, $c->{tok}; unlink @{$c->{files}} } } }
  for my $id (keys %kid) { my $c = $kid{$id}; next if $c->{open} || !exists $status{$c->{pid}};
    my $s = delete $status{$c->{pid}}; delete $pid2id{$c->{pid}};
    close $c->{iw} if $c->{iw};
    out('X', $id, pack('l>', $s & 127 ? -($s & 127) : $s >> 8)); delete $kid{$id} }
  for my $p (keys %status) { delete $status{$p} unless exists $pid2id{$p} }
  for my $p (keys %kill) { next if $kill{$p}[0] > time; kill('KILL', -$p); sweep($kill{$p}[1]); delete $kill{$p} }
  if (@ended && time - $swept >= 1) { sweep(@ended); @ended = (); $swept = time }
}
