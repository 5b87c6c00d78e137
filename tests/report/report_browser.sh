#!/usr/bin/env bash
# report_browser.sh — the report in a real browser: headless Chromium opens the report diff_report writes for the
# committed fixture (trimmed real demo results + the agent format fixture) and we check, from what it returns:
#   - the page's own self-check (an inline script in the page runs DOM queries on load: every method section that
#     has results rendered, its tables have rows, its SVG plots have lines or bars; it also records script errors
#     and Content-Security-Policy violations) wrote {"ok":true,...} into <pre id="selfcheck"> in the dumped DOM;
#   - Chromium's log (--enable-logging=stderr) has no console message: a script error, a console.error or a
#     blocked load (the CSP forbids every network load, and Chromium logs each refused one) all print
#     "INFO:CONSOLE" lines;
#   - no src/href/action in the page points off the file (http:, https:, //).
# A negative control injects an external image and a failing script into a copy of the page: the same checks
# must catch both, so they are known to be able to fail. A screenshot is saved as BUILD/report_screenshot.png.
# Skipped (exit 77, with a message) only when chromium is not installed: `make deps` installs it.
set -u
BIN=${1:?usage: report_browser.sh DIFF_REPORT}
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
    echo "SKIP: chromium is not installed, so the report was not checked in a browser (make deps installs it)"
    exit 77
fi
FIX="$DIFFKIT_FIXTURES/report"
WORK="$PWD/report_scratch_browser"
rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$FIX/results" "$WORK/results" && cp -r "$FIX/agent/." "$WORK/results/" \
    && chmod -R u+w "$WORK" || exit 1
out=$(DIFFKIT_ROOT="$DIFFKIT_SOURCE_DIR" "$BIN" model=demo organism=demo_glacier_honey dataset=demo \
      diffing.results_dir="$WORK/results" 2>&1) || { echo "diff_report failed: $out"; exit 1; }
PAGE="$WORK/results/report/index.html"
fail=0

# browse FILE STDERR_LOG -> the dumped DOM on stdout
browse() {
    timeout 90 "$CHROMIUM" --headless --disable-gpu --no-sandbox --no-first-run --user-data-dir="$WORK/profile" \
        --host-resolver-rules="MAP * ~NOTFOUND" --enable-logging=stderr --v=0 --virtual-time-budget=5000 \
        --dump-dom "file://$1" 2>"$2"
}

dom=$(browse "$PAGE" "$WORK/chromium.log")
verdict=$(printf '%s' "$dom" | grep -o '<pre id="selfcheck">[^<]*</pre>' | sed 's/<[^>]*>//g')
echo "self-check: $verdict"
case "$verdict" in *'"ok":true'*) ;; *) echo "FAIL: the page's self-check is not ok"; fail=1 ;; esac
for id in adl kl activation_analysis pca sae_difference crosscoder diff_mining-seed42_top100 amplification agent; do
    case "$verdict" in
    *"\"$id\":{\"state\":\"ok\""*'"rendered":true'*) ;;
    *) echo "FAIL: section $id is not shown as rendered in the self-check"; fail=1 ;;
    esac
done
if grep -q 'INFO:CONSOLE' "$WORK/chromium.log"; then
    echo "FAIL: console messages (script errors or blocked loads):"; grep 'INFO:CONSOLE' "$WORK/chromium.log"; fail=1
fi
if grep -Eqi '(src|href|action)="(https?:|ftp:)?//' "$PAGE"; then
    echo "FAIL: the page points off the file:"; grep -Eoi '(src|href|action)="(https?:|ftp:)?//[^"]*"' "$PAGE" | head; fail=1
fi

# negative control: the same checks must catch an external load and a script error
sed 's|<h2>Self-check</h2>|<img src="https://example.invalid/x.png"><script>undefinedFunction();</script><h2>Self-check</h2>|' \
    "$PAGE" > "$WORK/results/report/bad.html"
bad=$(browse "$WORK/results/report/bad.html" "$WORK/chromium_bad.log" | grep -o '<pre id="selfcheck">[^<]*</pre>')
case "$bad" in *'"ok":false'*'undefinedFunction'*'example.invalid'*) ;;
    *) echo "FAIL: the negative control was not caught by the self-check: $bad"; fail=1 ;; esac
grep -q 'INFO:CONSOLE.*example.invalid' "$WORK/chromium_bad.log" \
    || { echo "FAIL: the negative control's blocked load is not in Chromium's log"; fail=1; }

timeout 90 "$CHROMIUM" --headless --disable-gpu --no-sandbox --no-first-run --user-data-dir="$WORK/profile" \
    --hide-scrollbars --window-size=1400,2000 --screenshot="$PWD/report_screenshot.png" "file://$PAGE" >/dev/null 2>&1
[ -s "$PWD/report_screenshot.png" ] && echo "screenshot: $PWD/report_screenshot.png" \
    || { echo "FAIL: no screenshot"; fail=1; }
[ $fail = 0 ] && echo "report_browser: ok"
exit $fail
