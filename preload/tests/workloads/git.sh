# git.sh - the git workload, sourced by workloads.sh: a scratch repository with deterministic
# authors and dates; many commits, branches, a merge, a rename, log/diff/blame, repack, fsck.
# $RUN is the command prefix that puts the program on an allocator; output goes to stdout.
git_workload() {
  local files=${1:-150} commits=${2:-25}
  export GIT_CONFIG_NOSYSTEM=1 HOME=$PWD/home GIT_AUTHOR_NAME=A GIT_AUTHOR_EMAIL=a@example.org
  export GIT_COMMITTER_NAME=C GIT_COMMITTER_EMAIL=c@example.org
  mkdir -p home repo
  cd repo
  $RUN git init -q -b main .
  $RUN git config core.autocrlf false
  $RUN git config gc.auto 0
  local i c
  mkdir -p src docs
  for ((i = 0; i < files; i++)); do
    awk -v i="$i" 'BEGIN { for (l = 0; l < 60 + i % 40; l++) printf "line %d of file %d: %x\n", l, i, (l * 7919 + i * 104729) % 65521 }' >"src/f$i.txt"
  done
  for ((c = 0; c < commits; c++)); do
    export GIT_AUTHOR_DATE="170000$((1000 + c)) +0000" GIT_COMMITTER_DATE="170000$((1000 + c)) +0000"
    for ((i = c % 7; i < files; i += 7)); do
      printf 'change %d in commit %d\n' "$i" "$c" >>"src/f$i.txt"
    done
    printf 'doc %d\n' "$c" >"docs/d$((c % 5)).md"
    if ((c == 10)); then $RUN git checkout -q -b topic; fi
    if ((c == 15)); then $RUN git checkout -q main; fi
    if ((c == 18)); then $RUN git mv src/f1.txt src/renamed.txt; fi
    $RUN git add -A
    $RUN git commit -q -m "commit $c" -m "body of commit $c"
  done
  export GIT_AUTHOR_DATE="1700009999 +0000" GIT_COMMITTER_DATE="1700009999 +0000"
  $RUN git merge -q --no-edit topic -X ours >/dev/null 2>&1 || true
  $RUN git log --oneline --graph --all | head -50
  $RUN git log --stat -5 --format='%H %an %s'
  $RUN git diff --stat HEAD~8 HEAD
  $RUN git diff HEAD~3 HEAD | sha256sum
  $RUN git blame -s src/f3.txt | tail -5
  $RUN git show --format=%T -s HEAD
  $RUN git tag v1 HEAD~5
  $RUN git describe --tags
  $RUN git rev-list --count --all
  $RUN git repack -a -d -q
  $RUN git gc -q
  $RUN git fsck --strict --no-progress 2>&1
  $RUN git count-objects -v | grep -E '^(count|in-pack|packs)'
  $RUN git archive --format=tar HEAD | sha256sum
  $RUN git grep -c 'change 3' HEAD -- src | head -5
  cd ..
}
