#!/usr/bin/env bash
# The training progress display: a live line (carriage returns, a bar) when stdout ends on a
# terminal, plain lines ("step N/M loss ...", no carriage return) otherwise -- on one rank and
# under mpirun, where every rank's stdout is a pseudo-terminal that OpenMPI copies to mpirun's
# own stdout, so the destination is mpirun's (cli/term.c). The terminal is script(1)'s.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
command -v script >/dev/null || { bad "script(1) (util-linux) is needed"; finish; exit 1; }
A=(train --model tiny --layers 1 --d-model 32 --heads 2 --seq-len 32 --batch 4 --steps 4 --threads 1)
ONE="$BIN ${A[*]}"
MPI="${MPIRUN[*]} -np 2 $BIN ${A[*]} --dp 2"
# shape FILE WHAT: "lines" when it has 4 plain step lines and no carriage return, "live" when it
# has the bar redrawn with carriage returns and no plain step line (a terminal's own CR LF line
# ends do not count)
shape() {
  local crs steps bars
  crs=$(sed 's/\r$//' "$1" | tr -cd '\r' | wc -c); steps=$(grep -c '^step [1-4]/4 loss' "$1"); bars=$(grep -c 'step 4/4  loss' "$1")
  if [ "$crs" = 0 ] && [ "$steps" = 4 ]; then echo lines
  elif [ "$crs" -ge 4 ] && [ "$steps" = 0 ] && [ "$bars" -ge 1 ]; then echo live
  else echo "other ($crs carriage returns, $steps step lines)"; fi
}
expect() { # WHAT WANT FILE
  local got; got=$(shape "$3")
  [ "$got" = "$2" ] && ok "$1: $2" || bad "$1: want $2, got $got: $(head -c 400 "$3" | cat -A)"
}
$ONE > "$TMP/one_file" 2>&1;                                      expect "one rank to a file" lines "$TMP/one_file"
script -qec "$ONE" /dev/null > "$TMP/one_tty" 2>&1;               expect "one rank on a terminal" live "$TMP/one_tty"
$MPI > "$TMP/mpi_file" 2>&1;                                      expect "mpirun -np 2 to a file" lines "$TMP/mpi_file"
$MPI 2>&1 | cat > "$TMP/mpi_pipe";                                expect "mpirun -np 2 into a pipe" lines "$TMP/mpi_pipe"
script -qec "$MPI" /dev/null > "$TMP/mpi_tty" 2>&1;               expect "mpirun -np 2 on a terminal" live "$TMP/mpi_tty"
script -qec "$MPI | cat" /dev/null > "$TMP/mpi_tty_pipe" 2>&1;    expect "mpirun -np 2 on a terminal, piped" lines "$TMP/mpi_tty_pipe"
finish
