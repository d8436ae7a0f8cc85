#!/usr/bin/env bash
# Keeps the documentation true of the code.
#
#   bash checks/docs-test.sh LIB_PATH [VFIO_HELPER]
#   bash checks/docs-test.sh --update LIB_PATH      # regenerate docs/options.md
#                                                   # and checks/options.json
#
# LIB_PATH is a nixpkgs-lib checkout or store path (`bash checks/locked-input.sh
# nixpkgs-lib` prints the locked one); VFIO_HELPER a vfio-helper binary (default
# rust/target/debug/vfio-helper).
#
# Parts, one summary line each, then `docs: N passed, M failed`:
#   options    docs/options.md and checks/options.json (the option schema
#              `vfio-helper check` is built from) are what
#              checks/gen-options-doc.nix generates now
#   tables     every row of the README's option tables (under a heading ending
#              in (`prefix`)) names a declared option, with its declared type
#              (in the short form of short_type below) and default; every
#              declared option under a table's prefix has a row
#   snippets   every ```nix block of README.md evaluates; each carries a marker
#              comment on the line before it:
#                <!-- docs-test: host -->    host module body, wrapped in { … }
#                <!-- docs-test: vm -->      VM options, wrapped in
#                                            virtualisation.vms.test = { … }
#                <!-- docs-test: module -->  a whole module (function or attrset)
#                <!-- docs-test: flake -->   a flake.nix; must equal
#                                            templates/default/flake.nix
#                <!-- docs-test: skip REASON -->  not evaluated; REASON is shown
#              optionally followed by `with PATH…`: host modules (relative to
#              the repository) evaluated together with the block. An
#              unmarked block is a failure. Failed assertions fail.
#   names      every option path in README.md's inline code exists
#   commands   every `vfio-helper SUB --flag` in README.md exists (SUB --help
#              lists the flag); every `virsh SUB` is a virsh command; every
#              repository path in inline code exists
#   template   checks/tests/docs-template.nix (templates/default evaluates)
#
# DOCS_TEST_VERBOSE=1 lists every vfio-helper command line it checks.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

update=false
if [ "${1:-}" = "--update" ]; then
  update=true
  shift
fi
lib_arg=${1:?usage: docs-test.sh [--update] LIB_PATH [VFIO_HELPER]}
helper=${2:-$root/rust/target/debug/vfio-helper}

# shellcheck source=checks/nixpkgs-lib-dir.sh
. "$root/checks/nixpkgs-lib-dir.sh"
lib=$(nixpkgs_lib_dir docs-test "$lib_arg") || exit 2
command -v nix-instantiate >/dev/null || { echo "docs-test: nix-instantiate is not installed" >&2; exit 2; }
command -v python3 >/dev/null || { echo "docs-test: python3 is not installed" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

regen_cmd="bash checks/docs-test.sh --update \"\$(bash checks/locked-input.sh nixpkgs-lib)\""

generate() { # FORMAT -> stdout
  nix-instantiate --eval --strict --json "$root/checks/gen-options-doc.nix" \
    --arg lib "import $lib" --argstr format "$1" |
    case "$1" in
      markdown) python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin))' ;;
      # One key a line, sorted: reviewable diffs when an option changes.
      schema) python3 -c 'import json, sys; json.dump(json.load(sys.stdin), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False); sys.stdout.write("\n")' ;;
      *) cat ;;
    esac
}

if $update; then
  generate markdown >"$tmp/options.md" || exit 1
  generate schema >"$tmp/options.json" || exit 1
  mkdir -p docs
  mv "$tmp/options.md" docs/options.md
  mv "$tmp/options.json" checks/options.json
  echo "wrote docs/options.md and checks/options.json"
  exit 0
fi

total_pass=0 total_fail=0
summary() { # PART PASSED FAILED
  echo "$1: $2 passed, $3 failed"
  total_pass=$((total_pass + $2))
  total_fail=$((total_fail + $3))
}

# --- options: docs/options.md and checks/options.json are up to date --------

opt_pass=0 opt_fail=0
# FILE FORMAT WHAT: FILE is what checks/gen-options-doc.nix generates as FORMAT.
up_to_date() {
  if ! generate "$2" >"$tmp/generated" 2>"$tmp/err"; then
    echo "FAIL options: checks/gen-options-doc.nix does not evaluate ($2):"
    head -n 10 "$tmp/err" | sed 's/^/    /'
    opt_fail=$((opt_fail + 1))
  elif [ ! -f "$1" ]; then
    echo "FAIL options: $1 does not exist; run: $regen_cmd"
    opt_fail=$((opt_fail + 1))
  elif ! diff -u "$1" "$tmp/generated" >"$tmp/diff"; then
    echo "FAIL options: $1 is out of date$3; run: $regen_cmd"
    head -n 30 "$tmp/diff" | sed 's/^/    /'
    opt_fail=$((opt_fail + 1))
  else
    opt_pass=$((opt_pass + 1))
  fi
}
up_to_date docs/options.md markdown ""
up_to_date checks/options.json schema " (vfio-helper check is built from it)"
summary options "$opt_pass" "$opt_fail"

generate json >"$tmp/options.json" 2>"$tmp/err" || { echo "docs-test: cannot list the options:"; head -n 10 "$tmp/err"; exit 1; }

# --- README: tables, snippets, names, commands -------------------------------

# Extracts the checks from README.md into files under $tmp and prints the
# results of the purely textual ones; the Nix snippets are written to
# $tmp/snippets/N.nix with $tmp/snippets/N.desc for the loop below.
python3 - "$root" "$tmp" "$helper" <<'PY'
import json, os, re, shlex, subprocess, sys

root, tmp, helper = sys.argv[1:4]
readme = open(os.path.join(root, "README.md")).read()
lines = readme.split("\n")
options = json.load(open(os.path.join(tmp, "options.json")))
by_name = {o["name"]: o for o in options}

def report(part, passed, failures):
    for f in failures:
        print(f"FAIL {part}: {f}")
    with open(os.path.join(tmp, f"{part}.count"), "w") as out:
        out.write(f"{passed} {len(failures)}\n")

# Fenced blocks: (language, first line number (1-based) of the fence, text,
# the nearest non-blank line before the fence).
blocks = []
i = 0
while i < len(lines):
    m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
    if m:
        lang, start = m.group(2), i
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        k = start - 1
        while k >= 0 and lines[k].strip() == "":
            k -= 1
        before = lines[k].strip() if k >= 0 else ""
        blocks.append((lang, start + 1, "\n".join(lines[start + 1 : j]), before))
        i = j + 1
    else:
        i += 1

# Prose without fenced blocks, for inline code.
prose = []
in_block = False
for line in lines:
    if re.match(r"^\s*```", line):
        in_block = not in_block
        continue
    if not in_block:
        prose.append(line)
# A code span may wrap onto the next line; it is one line of code.
inline = [" ".join(c.split()) for c in re.findall(r"`([^`]+)`", "\n".join(prose))]

# --- tables -------------------------------------------------------------------
# The README's short name of a declared type (`types.*` description).
def short_type(t):
    if t.startswith("null or "):
        return "null or " + short_type(t[len("null or "):].strip("()"))
    if t.startswith("list of "):
        inner = short_type(t[len("list of "):])
        plural = {"PCI ID": "PCI IDs", "PCI address": "PCI addresses", "str": "str"}
        if inner in plural:
            return "list of " + plural[inner]
        if "/dev/" in t:
            return "list of /dev paths"
        if "[A-Za-z_]" in t:
            return "list of user names"
        return "list of " + inner
    m = re.match(r"^integer between (\d+) and (\d+)", t)
    if m:
        return f"int {m.group(1)}–{m.group(2)}"
    fixed = {
        "boolean": "bool",
        "positive integer, meaning >0": "positive int",
        "unsigned integer, meaning >=0": "int ≥ 0",
        "absolute path": "path",
        'strings concatenated with "\\n"': "lines",
        "string": "str",
        "package": "package",
        "attribute set of anything": "attrs",
        "attribute set of (submodule)": "attrs of submodule",
    }
    if t in fixed:
        return fixed[t]
    if t.startswith('value "" (singular enum) or '):
        return '`""` or ' + short_type(t[len('value "" (singular enum) or '):])
    if t.startswith("absolute path without white space"):
        return "path"
    for needle, name in [("one of ", "enum"), ("PCI vendor:device", "PCI ID"), ("PCI address", "PCI address"),
                         ("MAC address", "MAC"), ("UUID", "UUID"), ("input device", "/dev/input path"),
                         ("interface name", "interface name"), ("{1,15}", "interface name"),
                         ("boot entry tag", "label"), ("CPU list", "CPU list")]:
        if needle in t:
            return name
    return t

# Tables whose header starts with `| Option |`, under a heading naming the
# prefix in backticks, e.g. "### VM Options (`virtualisation.vms.<name>`)".
passed, failures = 0, []
prefix = None
seen = set()
table_prefixes = set()
for n, line in enumerate(lines, 1):
    h = re.match(r"^#+ .*\(`([^`]+)`\)\s*$", line)
    if h:
        prefix = h.group(1)
        continue
    if line.startswith("#"):
        prefix = None
        continue
    if prefix is None or not line.startswith("| `"):
        continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    name = prefix + "." + cells[0].strip("`")
    table_prefixes.add(prefix)
    seen.add(name)
    o = by_name.get(name)
    if o is None:
        failures.append(f"README.md:{n}: `{name}` is not a declared option")
        continue
    if cells[1] != short_type(o["type"]):
        failures.append(f"README.md:{n}: type of `{name}` is shown as `{cells[1]}`; the declared type `{o['type']}` is `{short_type(o['type'])}` in the tables")
        continue
    shown = cells[2]
    want = (o["default"] or "").strip()
    # Shown as code (`false`), or as the markdown of a defaultText.
    if shown not in (f"`{want}`", want):
        failures.append(f"README.md:{n}: default of `{name}` is shown as {cells[2]} but declared as `{want}`")
        continue
    passed += 1
for o in options:
    under = [p for p in table_prefixes if o["name"].startswith(p + ".")]
    if under and o["name"] not in seen:
        failures.append(f"`{o['name']}` is declared but has no row in the README's `{under[0]}` table")
report("tables", passed, failures)

# --- snippets -----------------------------------------------------------------
os.makedirs(os.path.join(tmp, "snippets"), exist_ok=True)
passed, failures = 0, []
count = 0
for lang, line_no, text, before in blocks:
    if lang != "nix":
        continue
    m = re.match(r"^<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->$", before)
    if not m:
        failures.append(f"README.md:{line_no}: nix block without a `<!-- docs-test: … -->` marker on the line before it")
        continue
    kind, rest = m.group(1), m.group(2)
    if kind == "skip":
        if not rest:
            failures.append(f"README.md:{line_no}: `docs-test: skip` needs a reason")
        else:
            print(f"skip README.md:{line_no}: {rest}")
        continue
    withs = []
    if rest:
        w = re.match(r"^with\s+(.+)$", rest)
        if not w:
            failures.append(f"README.md:{line_no}: cannot read the marker `{before}`")
            continue
        withs = w.group(1).split()
        missing = [p for p in withs if not os.path.exists(os.path.join(root, p))]
        if missing:
            failures.append(f"README.md:{line_no}: `with` names missing files: {' '.join(missing)}")
            continue
    if kind == "host":
        module = "{ lib, pkgs, config, ... }: {\n" + text + "\n}"
    elif kind == "vm":
        module = "{ lib, pkgs, config, ... }: {\nvirtualisation.vms.test = {\n" + text + "\n};\n}"
    elif kind == "module":
        module = text
    elif kind == "flake":
        template = open(os.path.join(root, "templates/default/flake.nix")).read()
        if text.strip() != template.strip():
            failures.append(f"README.md:{line_no}: the flake.nix shown differs from templates/default/flake.nix (the template is tested; copy it into the README)")
        else:
            passed += 1
        continue
    else:
        failures.append(f"README.md:{line_no}: unknown docs-test kind `{kind}`")
        continue
    count += 1
    with open(os.path.join(tmp, "snippets", f"{count}.nix"), "w") as f:
        f.write(module + "\n")
    with open(os.path.join(tmp, "snippets", f"{count}.desc"), "w") as f:
        f.write(f"README.md:{line_no} ({kind})\n")
        f.write(" ".join(os.path.join(root, p) for p in withs) + "\n")
report("snippets-text", passed, failures)

# --- names ------------------------------------------------------------------------
passed, failures = 0, []
pattern = re.compile(r"^(virtualisation\.vms\.[^.\s]+|virtualisation\.vfioHelper|modules\.vfio|modules\.networking)((?:\.[A-Za-z0-9_]+)*)")
checked = set()
for code in inline:
    m = pattern.match(code)
    if not m:
        continue
    head = m.group(1)
    if head.startswith("virtualisation.vms."):
        head = "virtualisation.vms.<name>"
    name = head + m.group(2)
    if name in checked:
        continue
    checked.add(name)
    if name in by_name or any(o.startswith(name + ".") for o in by_name):
        passed += 1
    else:
        failures.append(f"`{code}` in README.md: no option {name}")
report("names", passed, failures)

# --- commands -------------------------------------------------------------------
passed, failures = 0, []
shell_lines = []
for lang, line_no, text, before in blocks:
    if lang in ("bash", "sh", "console", "shell"):
        for k, l in enumerate(text.split("\n")):
            shell_lines.append((line_no + 1 + k, l))
for code in inline:
    shell_lines.append((None, code))

help_cache = {}
def helper_help(sub):
    if sub not in help_cache:
        try:
            r = subprocess.run([helper, sub, "--help"], capture_output=True, text=True, timeout=30)
            help_cache[sub] = r.stdout if r.returncode == 0 else None
        except OSError:
            help_cache[sub] = None
    return help_cache[sub]

have_helper = os.access(helper, os.X_OK)
have_virsh = subprocess.run(["sh", "-c", "command -v virsh"], capture_output=True).returncode == 0
checked = set()
for line_no, l in shell_lines:
    where = f"README.md:{line_no}" if line_no else "README.md (inline)"
    # Drop shell comments (a `#` after a space), keeping `.#vfio-helper`.
    code = re.sub(r"(^|\s)#.*$", "", l)
    for m in re.finditer(r"vfio-helper(?:\s+--)?\s+([a-z][a-z-]*)([^|;&)]*)", code):
        sub, args = m.group(1), m.group(2)
        flags = sorted(set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", args)))
        key = (sub, tuple(flags))
        if key in checked:
            continue
        checked.add(key)
        if not have_helper:
            failures.append(f"{where}: cannot check `vfio-helper {sub}`: {helper} is not executable (cargo build in rust/)")
            continue
        text = helper_help(sub)
        if text is None:
            failures.append(f"{where}: `vfio-helper {sub}` is not a subcommand")
            continue
        if os.environ.get("DOCS_TEST_VERBOSE"):
            print(f"check {where}: vfio-helper {sub} {' '.join(flags)}")
        missing = [f for f in flags if not re.search(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])", text)]
        if missing:
            failures.append(f"{where}: `vfio-helper {sub}` has no flag {', '.join(missing)}")
        else:
            passed += 1
    m = re.match(r"^\s*(?:sudo\s+)?virsh(?:\s+-c\s+\S+)?\s+([a-z][a-z-]*)", code)
    if m and ("virsh", m.group(1)) not in checked:
        checked.add(("virsh", m.group(1)))
        if not have_virsh:
            print(f"skip {where}: virsh is not installed, `virsh {m.group(1)}` not checked")
        elif subprocess.run(["virsh", "help", m.group(1)], capture_output=True).returncode == 0:
            passed += 1
        else:
            failures.append(f"{where}: `virsh {m.group(1)}` is not a virsh command")
# Repository paths in inline code and links.
paths = set(re.findall(r"`((?:checks|docs|hosts|modules|templates|rust)/[A-Za-z0-9_./-]*)`", "\n".join(prose)))
paths |= set(re.findall(r"\]\(((?:checks|docs|hosts|modules|templates|rust)/[A-Za-z0-9_./-]*)\)", readme))
for p in sorted(paths):
    if os.path.exists(os.path.join(root, p.rstrip("/"))):
        passed += 1
    else:
        failures.append(f"README.md names `{p}`, which does not exist")
report("commands", passed, failures)
PY

for part in tables names commands; do
  read -r p f <"$tmp/$part.count" || { p=0; f=1; }
  summary "$part" "$p" "$f"
done

# --- snippets: evaluate -------------------------------------------------------

read -r pass fail <"$tmp/snippets-text.count" || { pass=0; fail=1; }
for file in "$tmp"/snippets/*.nix; do
  [ -e "$file" ] || continue
  desc=$(sed -n 1p "${file%.nix}.desc")
  withs=$(sed -n 2p "${file%.nix}.desc")
  imports=""
  for w in $withs; do imports="$imports $w"; done
  expr="
    let
      lib = import $lib;
      c = import $root/checks/assert-host.nix {
        inherit lib;
        host = { imports = [ $file $imports ]; };
      };
    in builtins.deepSeq [
      c.virtualisation.vms
      (c.virtualisation.vmsInternal.configJson or null)
      (c.modules.vfio or null)
      c.boot.kernelParams c.boot.kernelModules c.boot.extraModprobeConfig
      c.environment.systemPackages c.systemd.services
      c.assertions
    ] true"
  if nix-instantiate --eval --strict -E "$expr" >/dev/null 2>"$tmp/err"; then
    pass=$((pass + 1))
  else
    echo "FAIL snippets: $desc does not evaluate:"
    grep -v '^evaluation warning' "$tmp/err" | head -n 12 | sed 's/^/    /'
    fail=$((fail + 1))
  fi
done
summary snippets "$pass" "$fail"

# --- template -----------------------------------------------------------------

expr="
  let
    lib = import $lib;
    evalHost = host: import $root/checks/eval-host.nix { inherit lib host; };
  in lib.runTests (import $root/checks/tests/docs-template.nix { inherit lib evalHost; })"
names="
  let
    lib = import $lib;
    evalHost = host: import $root/checks/eval-host.nix { inherit lib host; };
  in builtins.length (builtins.filter (lib.hasPrefix \"test\") (builtins.attrNames (import $root/checks/tests/docs-template.nix { inherit lib evalHost; })))"
if ! n=$(nix-instantiate --eval --strict -E "$names" 2>"$tmp/err"); then
  echo "FAIL template: checks/tests/docs-template.nix does not evaluate:"
  head -n 12 "$tmp/err" | sed 's/^/    /'
  summary template 0 1
elif ! out=$(nix-instantiate --eval --strict --json -E "$expr" 2>"$tmp/err"); then
  echo "FAIL template: templates/default does not evaluate:"
  head -n 12 "$tmp/err" | sed 's/^/    /'
  summary template 0 "$n"
else
  f=$(python3 -c 'import json, sys; r = json.loads(sys.argv[1]); [print("FAIL template:", t["name"], "expected", json.dumps(t["expected"]), "got", json.dumps(t["result"]), file=sys.stderr) for t in r]; print(len(r))' "$out")
  summary template $((n - f)) "$f"
fi

echo "docs: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
