#!/usr/bin/env bash
# Evaluates the NixOS modules with nixpkgs-lib alone (no full nixpkgs needed).
#
#   bash checks/run-nix-tests.sh LIB_PATH [VFIO_HELPER]
#
# LIB_PATH is a nixpkgs-lib checkout or store path (the directory holding
# lib/default.nix, or lib/ itself). VFIO_HELPER is an optional vfio-helper
# binary; without it the helper tier is skipped (and says so).
#
# Four parts, each with a summary line:
#   module-tests  every checks/tests/*.nix, in lib.runTests format (among them
#                 checks/tests/interface-*.nix, the tests of the NixOS
#                 stand-in; a shared *-fixtures.nix has no tests of its own)
#   bad-inputs    every checks/bad-inputs/<rule>.nix must fail to evaluate with
#                 an error containing the one line in <rule>.expected
#   nixos-test    checks/nixos-test.nix parses and evaluates against the stub
#                 pkgs, and its test script is valid Python (not run here)
#   helper        the JSON the module writes for each VM of hosts/* is read by
#                 `vfio-helper config`, and a VM with only a name has the same
#                 defaults in the module and in the helper
# and a last line `nix: N passed, M failed` over all of them. Exit 1 if any failed.
set -uo pipefail

lib_arg=${1:?usage: run-nix-tests.sh LIB_PATH [VFIO_HELPER]}
helper=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

# shellcheck source=checks/nixpkgs-lib-dir.sh
. "$root/checks/nixpkgs-lib-dir.sh"
lib=$(nixpkgs_lib_dir run-nix-tests "$lib_arg") || exit 2
command -v nix-instantiate >/dev/null || { echo "run-nix-tests: nix-instantiate is not installed" >&2; exit 2; }
command -v python3 >/dev/null || { echo "run-nix-tests: python3 is not installed" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

total_pass=0 total_fail=0
count() { # PASSED FAILED
  total_pass=$((total_pass + $1))
  total_fail=$((total_fail + $2))
}

nix_eval() { # EXPR -> JSON on stdout
  nix-instantiate --eval --strict --json -E "$1"
}

# --- module tests -------------------------------------------------------------

pass=0 fail=0
for file in checks/tests/*.nix; do
  [ -e "$file" ] || continue
  # Each test's expr is evaluated under tryEval, so one test that throws is
  # reported as a failure of that test instead of aborting the whole file.
  expr="
    let
      lib = import $lib;
      evalHost = host: import $root/checks/eval-host.nix { inherit lib host; };
      tests = import $root/$file { inherit lib evalHost; };
      names = builtins.filter (lib.hasPrefix \"test\") (builtins.attrNames tests);
      run = name:
        let
          t = tests.\${name};
          r = builtins.tryEval (builtins.deepSeq t.expr t.expr);
        in
          if !r.success then { inherit name; ok = false; error = true; expected = t.expected; result = null; }
          else { inherit name; ok = r.value == t.expected; error = false; expected = t.expected; result = r.value; };
    in map run names"
  if ! nix_eval "$expr" >"$tmp/out.json" 2>"$tmp/err"; then
    # An error tryEval cannot catch (e.g. a missing file): run the tests one
    # by one to find which ones fail.
    head -n 3 "$tmp/err" | sed "s|^|    $file: |"
    tests="let lib = import $lib; evalHost = host: import $root/checks/eval-host.nix { inherit lib host; };
      in import $root/$file { inherit lib evalHost; }"
    if ! names=$(nix-instantiate --eval --strict --json -E "builtins.filter (n: builtins.substring 0 4 n == \"test\") (builtins.attrNames ($tests))" 2>"$tmp/err"); then
      echo "FAIL $file: does not evaluate:"
      head -n 15 "$tmp/err" | sed 's/^/    /'
      fail=$((fail + 1))
      continue
    fi
    for name in $(python3 -c 'import json, sys; print(" ".join(json.loads(sys.argv[1])))' "$names"); do
      if out=$(nix_eval "let t = ($tests).$name; in t.expr == t.expected" 2>"$tmp/err") && [ "$out" = true ]; then
        pass=$((pass + 1))
      else
        echo "FAIL $file: $name"
        if [ -s "$tmp/err" ]; then head -n 6 "$tmp/err" | sed 's/^/    /'; else echo "    expr != expected"; fi
        fail=$((fail + 1))
      fi
    done
    continue
  fi
  read -r p f < <(python3 - "$tmp/out.json" "$file" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
p = f = 0
for r in results:
    if r["ok"]:
        p += 1
        continue
    f += 1
    print(f"FAIL {sys.argv[2]}: {r['name']}", file=sys.stderr)
    print(f"    expected: {json.dumps(r['expected'], sort_keys=True)}", file=sys.stderr)
    if r["error"]:
        print("    got:      an evaluation error (see below)", file=sys.stderr)
    else:
        print(f"    got:      {json.dumps(r['result'], sort_keys=True)}", file=sys.stderr)
print(p, f)
PY
  ) 2>"$tmp/report"
  cat "$tmp/report"
  # Show the error of each test that threw.
  for name in $(grep -o '^FAIL [^:]*: test[A-Za-z0-9_]*' "$tmp/report" | sed 's/.*: //'); do
    if grep -q "^FAIL $file: $name\$" "$tmp/report" && grep -A2 "^FAIL $file: $name\$" "$tmp/report" | grep -q 'an evaluation error'; then
      nix_eval "let lib = import $lib; evalHost = host: import $root/checks/eval-host.nix { inherit lib host; };
        in (import $root/$file { inherit lib evalHost; }).$name.expr" 2>&1 >/dev/null |
        head -n 8 | sed 's/^/    /'
    fi
  done
  pass=$((pass + p)) fail=$((fail + f))
done
echo "module-tests: $pass passed, $fail failed"
count "$pass" "$fail"

# --- bad-input corpus -----------------------------------------------------------

pass=0 fail=0
for file in checks/bad-inputs/*.nix; do
  [ -e "$file" ] || continue
  rule=${file%.nix}
  if [ ! -f "$rule.expected" ]; then
    echo "FAIL $file: no $rule.expected"
    fail=$((fail + 1))
    continue
  fi
  want=$(head -n 1 "$rule.expected")
  if [ -z "$want" ]; then
    echo "FAIL $file: $rule.expected is empty"
    fail=$((fail + 1))
    continue
  fi
  # Force what building the system would force: the VMs, the vfio settings,
  # the boot settings, packages and services, the assertions (of the
  # specialisations too).
  expr="
    let
      lib = import $lib;
      c = import $root/checks/assert-host.nix { inherit lib; host = $root/$file; };
    in builtins.deepSeq [
      c.virtualisation.vms
      (c.virtualisation.vmsInternal.configJson or null)
      (c.modules.vfio or null)
      c.boot.kernelParams c.boot.kernelModules c.boot.initrd c.boot.extraModprobeConfig
      c.boot.blacklistedKernelModules c.boot.kernel.sysctl
      c.environment.systemPackages c.systemd.services
      c.assertions
    ] true"
  if nix_eval "$expr" >/dev/null 2>"$tmp/err"; then
    echo "FAIL $file: evaluated without error; expected an error containing: $want"
    fail=$((fail + 1))
  elif grep -qF -- "$want" "$tmp/err"; then
    pass=$((pass + 1))
  else
    echo "FAIL $file: the error does not contain: $want"
    head -n 8 "$tmp/err" | sed 's/^/    /'
    fail=$((fail + 1))
  fi
done
echo "bad-inputs: $pass passed, $fail failed"
count "$pass" "$fail"

# --- checks/nixos-test.nix (the NixOS VM test; not run here) --------------------

# It needs full nixpkgs and KVM (`nix build .#checks.x86_64-linux.nixos-test`).
# Here, for both variants (nested KVM and TCG), the file must parse and
# evaluate against the stub pkgs, and its test script must be valid Python
# (and pass pyflakes, as the NixOS test driver lints it, when pyflakes is
# installed). checks/tests/interface-libvirtd-system.nix evaluates its host
# against the NixOS stand-in.
pass=0 fail=0
lint=ast
python3 -c 'import pyflakes' 2>/dev/null && lint=pyflakes
for nested in true false; do
  if ! nix-instantiate --parse checks/nixos-test.nix >/dev/null 2>"$tmp/err"; then
    echo "FAIL checks/nixos-test.nix does not parse:"
    head -n 8 "$tmp/err" | sed 's/^/    /'
    fail=$((fail + 1))
    continue
  fi
  if ! nix_eval "
    let
      lib = import $lib;
      pkgs = import $root/checks/stub-pkgs.nix { inherit lib; };
      test = (import $root/checks/nixos-test.nix {
        inherit pkgs;
        self.nixosModules.default = $root/modules/default.nix;
        nestedKvm = $nested;
      }).test;
    in test.testScript { nodes.host.system.build.toplevel = \"/nix/store/00000000000000000000000000000000-nixos-system-host\"; }" \
    >"$tmp/script.json" 2>"$tmp/err"; then
    echo "FAIL checks/nixos-test.nix (nestedKvm = $nested) does not evaluate against the stub pkgs:"
    head -n 8 "$tmp/err" | sed 's/^/    /'
    fail=$((fail + 1))
    continue
  fi
  python3 -c 'import json, sys; sys.stdout.write(json.load(open(sys.argv[1])))' "$tmp/script.json" >"$tmp/script.py"
  if [ "$lint" = pyflakes ]; then
    # The names the NixOS test driver defines for the script.
    PYFLAKES_BUILTINS=host,start_all,subtest,machines,driver,log python3 -m pyflakes "$tmp/script.py" >"$tmp/err" 2>&1
  else
    python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$tmp/script.py" >"$tmp/err" 2>&1
  fi
  if [ $? -eq 0 ]; then
    pass=$((pass + 1))
  else
    echo "FAIL checks/nixos-test.nix (nestedKvm = $nested): its test script fails $lint:"
    head -n 8 "$tmp/err" | sed 's/^/    /'
    fail=$((fail + 1))
  fi
done
echo "nixos-test: $pass passed, $fail failed (parsed, evaluated against stub pkgs, script checked with $lint); the VM test itself was NOT run: it needs full nixpkgs and KVM"
count "$pass" "$fail"

# --- the helper reads what the module writes ----------------------------------

normalise() { python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), sort_keys=True, indent=1))'; }

if [ -z "$helper" ]; then
  echo "helper: SKIPPED (no vfio-helper binary given; pass it as the second argument)"
elif [ ! -x "$helper" ]; then
  echo "helper: SKIPPED ($helper does not exist or is not executable; build it with cargo build in rust/)"
else
  pass=0 fail=0
  # Every VM of every example host.
  for host in hosts/*/; do
    host=${host%/}
    if ! nix_eval "let lib = import $lib; in
        (import $root/checks/eval-host.nix { inherit lib; host = $root/$host; }).virtualisation.vmsInternal.configJson" \
      >"$tmp/configs.json" 2>"$tmp/err"; then
      echo "FAIL $host: does not evaluate"
      head -n 5 "$tmp/err" | sed 's/^/    /'
      fail=$((fail + 1))
      continue
    fi
    for vm in $(python3 -c 'import json, sys; print(" ".join(sorted(json.load(open(sys.argv[1])))))' "$tmp/configs.json"); do
      python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/configs.json" "$vm" >"$tmp/vm.json"
      if "$helper" config --config "$tmp/vm.json" >"$tmp/helper.json" 2>"$tmp/err"; then
        # The helper must read back exactly what the module wrote.
        if [ "$(normalise <"$tmp/vm.json")" = "$(normalise <"$tmp/helper.json")" ]; then
          pass=$((pass + 1))
        else
          echo "FAIL $host/$vm: vfio-helper config changes the module's JSON:"
          diff <(normalise <"$tmp/vm.json") <(normalise <"$tmp/helper.json") | head -n 20 | sed 's/^/    /'
          fail=$((fail + 1))
        fi
      else
        echo "FAIL $host/$vm: vfio-helper config rejects the module's JSON:"
        head -n 10 "$tmp/err" | sed 's/^/    /'
        fail=$((fail + 1))
      fi
    done
  done

  # Defaults: a VM with only a name (and with only a template) must get the
  # same values from the module and from the helper.
  for case in 'x|{ }|{"name":"x"}' 'srv|{ type = "linux-server"; }|{"name":"srv","type":"linux-server"}' \
    'g|{ gpu.enable = true; gpu.pciId = "10de:2782"; gpu.address = "0000:01:00.0"; }|{"name":"g","gpu":{"enable":true,"pciId":"10de:2782","address":"0000:01:00.0"}}'; do
    IFS='|' read -r name module json <<<"$case"
    if ! nix_eval "let lib = import $lib; in
        (import $root/checks/eval-host.nix { inherit lib; host = { virtualisation.vms.$name = $module; }; testVendor = null; }).virtualisation.vmsInternal.configJson.$name" \
      >"$tmp/m.json" 2>"$tmp/err"; then
      echo "FAIL defaults of $name: the module does not evaluate"
      head -n 5 "$tmp/err" | sed 's/^/    /'
      fail=$((fail + 1))
      continue
    fi
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1])))' "$tmp/m.json" | normalise >"$tmp/module.json"
    echo "$json" >"$tmp/min.json"
    if ! "$helper" config --config "$tmp/min.json" >"$tmp/h.json" 2>"$tmp/err"; then
      echo "FAIL defaults of $name: vfio-helper config rejects $json"
      head -n 10 "$tmp/err" | sed 's/^/    /'
      fail=$((fail + 1))
    elif diff <(normalise <"$tmp/h.json") "$tmp/module.json" >"$tmp/diff"; then
      pass=$((pass + 1))
    else
      echo "FAIL defaults of $name: the module's defaults (>) differ from the helper's (<):"
      head -n 20 "$tmp/diff" | sed 's/^/    /'
      fail=$((fail + 1))
    fi
  done

  # The domain XML of each example VM, when this helper build renders domains.
  if "$helper" domain --help 2>/dev/null | grep -q -- '--config'; then
    for host in hosts/*/; do
      host=${host%/}
      nix_eval "let lib = import $lib; in
        (import $root/checks/eval-host.nix { inherit lib; host = $root/$host; }).virtualisation.vmsInternal.configJson" \
        >"$tmp/configs.json" 2>/dev/null || continue
      for vm in $(python3 -c 'import json, sys; print(" ".join(sorted(json.load(open(sys.argv[1])))))' "$tmp/configs.json"); do
        python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/configs.json" "$vm" >"$tmp/vm.json"
        mkdir -p "$tmp/xml/$host"
        if ! "$helper" domain --config "$tmp/vm.json" >"$tmp/xml/$host/$vm.xml" 2>"$tmp/err"; then
          echo "FAIL $host/$vm: vfio-helper domain fails:"
          head -n 10 "$tmp/err" | sed 's/^/    /'
          fail=$((fail + 1))
        elif ! grep -q "<name>$vm</name>" "$tmp/xml/$host/$vm.xml"; then
          echo "FAIL $host/$vm: the domain XML has no <name>$vm</name>"
          fail=$((fail + 1))
        elif command -v virt-xml-validate >/dev/null && ! virt-xml-validate "$tmp/xml/$host/$vm.xml" domain >"$tmp/err" 2>&1; then
          echo "FAIL $host/$vm: the domain XML does not validate:"
          head -n 10 "$tmp/err" | sed 's/^/    /'
          fail=$((fail + 1))
        else
          pass=$((pass + 1))
        fi
      done
    done
    command -v virt-xml-validate >/dev/null || echo "note: virt-xml-validate is not installed; domain XML was not schema-checked"

    # The manifest each host writes is accepted by `vfio-helper sync`: a dry
    # run against libvirt's built-in test driver (no daemon), with the store
    # paths of the domain XML replaced by the files rendered above. Every
    # declared domain must appear in the plan.
    if command -v virsh >/dev/null && virsh -c test:///default list --all >/dev/null 2>&1; then
      for host in hosts/*/; do
        host=${host%/}
        if ! nix_eval "let lib = import $lib; in
            (import $root/checks/eval-host.nix { inherit lib; host = $root/$host; }).virtualisation.vmsInternal.manifestFile.text" \
          >"$tmp/manifest.json" 2>"$tmp/err"; then
          echo "FAIL $host: the manifest does not evaluate"
          head -n 5 "$tmp/err" | sed 's/^/    /'
          fail=$((fail + 1))
          continue
        fi
        # Image files go to a scratch directory (this machine may have no
        # /var/lib/libvirt/images); block devices stay as declared.
        mkdir -p "$tmp/images"
        python3 - "$tmp/manifest.json" "$tmp/xml/$host" "$tmp/images" >"$tmp/m.json" <<'PY'
import json, os, sys
m = json.loads(json.load(open(sys.argv[1])))
for d in m["domains"]:
    d["xml"] = f"{sys.argv[2]}/{d['name']}.xml"
    if not d["disk"].startswith("/dev/"):
        d["disk"] = os.path.join(sys.argv[3], os.path.basename(d["disk"]))
print(json.dumps(m))
PY
        if "$helper" sync --manifest "$tmp/m.json" --dry-run --connect test:///default >"$tmp/out" 2>&1 &&
          python3 - "$tmp/m.json" "$tmp/out" <<'PY'
import json, sys
names = [d["name"] for d in json.load(open(sys.argv[1]))["domains"]]
out = open(sys.argv[2]).read()
sys.exit(0 if names and all(n in out for n in names) else 1)
PY
        then
          pass=$((pass + 1))
        else
          echo "FAIL $host: vfio-helper sync --dry-run does not accept the manifest:"
          head -n 10 "$tmp/out" | sed 's/^/    /'
          fail=$((fail + 1))
        fi
      done
    else
      echo "note: virsh with libvirt's test driver is not available; the manifests were not given to vfio-helper sync"
    fi
  else
    echo "note: this vfio-helper build has no \`domain --config\`; domain rendering of the example hosts not tested"
  fi
  echo "helper: $pass passed, $fail failed"
  count "$pass" "$fail"
fi

echo "nix: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
