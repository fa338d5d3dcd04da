#!/usr/bin/python3
"""Generates wardfs(1), wardfs-mount-options(5) and the bash and zsh completions from the
built binary's --help output, so none of them can drift from the CLI11 definitions.
The hand-written prose lives in docs/man/*.in (roff, with @PLACEHOLDERS@).

  gen_docs.py --wardfs build/cli/wardfs --templates docs/man --version 0.1.0 --out DIR
"""

import argparse
import gzip
import os
import re
import subprocess
import sys


def help_text(wardfs, *args):
    p = subprocess.run([wardfs, *args, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, check=False)
    if p.returncode != 0:
        sys.exit("gen_docs: %s %s --help failed: %s" % (wardfs, " ".join(args), p.stderr))
    return p.stdout


class Help:
    """One CLI11 help page: description, usage, sections of (name, description) entries."""

    def __init__(self, text):
        self.description = []
        self.usage = ""
        self.sections = {}  # "Options" -> [(names, text)]
        self.footer = []
        section = None
        for line in text.splitlines():
            if line.startswith("Usage: "):
                # CLI11 prints argv[0], which is a build path here.
                self.usage = re.sub(r"^\S+", "wardfs", line[len("Usage: "):])
                section = "after-usage"
            elif re.match(r"^[A-Z][A-Za-z ]*:$", line) and section is not None:
                section = line[:-1]
                self.sections[section] = [] if section not in ("Exit codes",) else None
                if self.sections[section] is None:
                    self.footer.append(line)
            elif section is None:
                if line.strip():
                    self.description.append(line.strip())
            elif section == "Exit codes" or (section == "after-usage" and line.strip()):
                self.footer.append(line)
            elif section in self.sections and line.strip():
                entries = self.sections[section]
                m = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
                if line.startswith("  ") and not line.startswith("    ") and m:
                    entries.append([m.group(1).strip(), [m.group(2)] if m.group(2) else []])
                elif entries:
                    entries[-1][1].append(line.strip())

    def entries(self, section):
        return [(name, lines) for name, lines in self.sections.get(section) or []]


def option_names(name_field):
    """'-f,--foreground' -> ['-f', '--foreground']; '--keyfile TEXT' -> ['--keyfile']."""
    first = name_field.split(" ")[0]
    return [n for n in first.split(",") if n.startswith("-")]


# CLI11's type labels after an option or positional name, and its constraint notes.
CLI11_TYPES = {"TEXT": "VALUE", "UINT": "N", "INT": "N", "FLOAT": "NUMBER"}


def clean_name(name_field):
    """'--keyfile TEXT' -> '--keyfile VALUE'; 'CIPHERDIR TEXT REQUIRED' -> 'CIPHERDIR';
    '--cipher TEXT:{a,b}' -> '--cipher {a,b}'; '-o TEXT ...' -> '-o VALUE ...'."""
    name_field = re.split(r" (?:Excludes|Needs): ", name_field)[0]
    words = []
    for i, word in enumerate(name_field.split()):
        if word == "REQUIRED":
            continue
        kind, _, choices = word.partition(":")
        if i > 0 and kind in CLI11_TYPES:
            if not name_field.startswith("-"):
                continue  # a positional's own name says what it is
            word = choices if choices.startswith("{") else CLI11_TYPES[kind]
        words.append(word)
    return " ".join(words)


def clean_lines(lines):
    """CLI11 notes ('Excludes: --keyfile', 'Needs: ...') as sentences."""
    out = []
    for line in lines:
        m = re.match(r"^(Excludes|Needs):\s*(.*)$", line)
        if m:
            names = ", ".join(m.group(2).split())
            line = ("Not together with %s." if m.group(1) == "Excludes" else "Needs %s.") % names
        out.append(line)
    return out


def roff_escape(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def roff_entries(entries):
    out = []
    for name, lines in entries:
        out.append(".TP")
        out.append("\\fB%s\\fR" % roff_escape(clean_name(name)))
        # The description always starts on the next line: a tag shorter than the indent
        # ("shared") would otherwise share its line with one space before the text.
        out.append(".br")
        notes = re.findall(r" ((?:Excludes|Needs): .*)$", name)
        for line in clean_lines(lines + notes):
            out.append(roff_escape(line))
            out.append(".br")
        if out[-1] == ".br":
            out.pop()
    return "\n".join(out)


def command_section(wardfs, name, summary):
    h = Help(help_text(wardfs, name))
    out = [".SS \"%s\"" % ("wardfs " + name), ".B %s" % roff_escape(h.usage), ".PP",
           roff_escape(" ".join(h.description) or summary)]
    for section in ("Positionals", "Options"):
        entries = [e for e in h.entries(section) if not e[0].startswith("-h,--help")]
        if section == "Options":
            # CLI11 repeats positionals under Options; list them once.
            entries = [e for e in entries if e[0].startswith("-")]
        if entries:
            out += [".PP", "\\fI%s:\\fR" % section, ".RS", roff_entries(entries), ".RE"]
    return "\n".join(out), h


def command_page(name, section, h, version):
    """wardfs-NAME(1): the command's section of wardfs(1) as a page of its own."""
    body = section.split("\n", 1)[1]  # without the .SS heading
    return "\n".join([
        ".\\\" wardfs-%s(1), generated by packaging/gen_docs.py from wardfs %s --help." % (name, name),
        ".TH WARDFS\\-%s 1 \"\" \"wardfs %s\" \"User Commands\"" % (name.upper(), version),
        ".SH NAME",
        "wardfs\\-%s \\- %s" % (name, roff_escape((h.description or [name])[0])),
        ".SH SYNOPSIS", body,
        ".SH SEE ALSO",
        "\\fBwardfs\\fR(1), \\fBwardfs\\-mount\\-options\\fR(5)", ""])


def subcommands(root):
    # "unmount, umount" -> "unmount" (the alias is in the description line of the page)
    return [(name.split(",")[0].split()[0], " ".join(lines)) for name, lines in root.entries("Subcommands")]


def mount_options(mount_help):
    """The -o option's help: a header line, then "  name  help" lines."""
    for name, lines in mount_help.entries("Options"):
        if option_names(name) == ["-o"]:
            rows = []
            for line in lines[1:]:
                m = re.match(r"^(\S+)\s{2,}(.*)$", line)
                if m:
                    rows.append([m.group(1), [m.group(2)]])
                elif rows:
                    rows[-1][1].append(line)
            return rows
    sys.exit("gen_docs: no -o option in wardfs mount --help")


def fill(template_path, values):
    with open(template_path) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace("@%s@" % key, value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        sys.exit("gen_docs: %s: unknown placeholders %s" % (template_path, left))
    return text


def write(path, data, compress=False):
    if compress:
        # mtime=0 and no name: the same input gives the same bytes (reproducible .deb).
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                    compresslevel=9) as f:
            f.write(data.encode())
    else:
        with open(path, "w") as f:
            f.write(data)


def choices_of(name_field):
    """'--cipher TEXT:{aes-256-gcm,xchacha20-poly1305}' -> ['aes-256-gcm', 'xchacha20-poly1305']."""
    m = re.search(r":\{([^}]*)\}", name_field)
    return m.group(1).split(",") if m else []


def o_words(mount_rows):
    """-o names to complete: 'keyfile=' (a value follows), 'ro'; fstab names one by one."""
    words = []
    for name, _ in mount_rows:
        for part in name.split(","):
            if "*" in part:
                continue
            words.append(part.split("=")[0] + "=" if "=" in part else part)
    return words


def bash_completion(commands, per_command, choices, nested, o_names):
    cases = []
    for name, _ in commands:
        cases.append("    %s) opts=%r; subs=%r ;;" % (name, " ".join(per_command[name]),
                                                     " ".join(nested.get(name, []))))
    value_cases = ["    %s) COMPREPLY=($(compgen -W %r -- \"$cur\")); return ;;" % (opt, " ".join(words))
                   for opt, words in sorted(choices.items())]
    return """# bash completion for wardfs (generated from wardfs --help by packaging/gen_docs.py)
_wardfs() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd="" i opts subs
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in -*) ;; *) cmd=${COMP_WORDS[i]}; break ;; esac
  done
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W %r -- "$cur"))
    return
  fi
  case $prev in
    -o)
      # a comma-separated list: complete its last item
      local head="" last=$cur
      if [[ $cur == *,* ]]; then head=${cur%%,*},; last=${cur##*,}; fi
      COMPREPLY=($(compgen -P "$head" -W %r -- "$last"))
      compopt -o nospace 2>/dev/null
      return ;;
%s
  esac
  case $cmd in
%s
    *) opts=""; subs="" ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$subs" -- "$cur") $(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
  fi
}
complete -F _wardfs wardfs
""" % (" ".join([n for n, _ in commands] + ["--help", "--version"]), " ".join(o_names),
       "\n".join(value_cases), "\n".join(cases))


def zsh_quote(text):
    return text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def zsh_completion(commands, per_command_help, choices, nested, o_names):
    cmd_lines = "\n".join("    '%s:%s'" % (n, zsh_quote(d)) for n, d in commands)
    cases = []
    for name, _ in commands:
        specs = []
        for opt, desc, takes_value in per_command_help[name]:
            value = ":value:_files" if takes_value else ""
            if opt in choices:
                value = ":value:(%s)" % " ".join(choices[opt])
            elif opt == "-o":
                value = ":option:_values -s , option %s" % " ".join(o_names)
            specs.append("'%s[%s]%s'" % (opt, zsh_quote(desc), value))
        rest = "'*:file:_files'"
        if nested.get(name):
            rest = "'1:target:_files' '2:action:(%s)'" % " ".join(nested[name])
        cases.append("    (%s) _arguments -s %s %s ;;" % (name, " ".join(specs), rest))
    return """#compdef wardfs
# zsh completion for wardfs (generated from wardfs --help by packaging/gen_docs.py)
_wardfs() {
  local -a commands
  commands=(
%s
  )
  if (( CURRENT == 2 )); then
    _describe -t commands 'wardfs command' commands
    return
  fi
  local cmd=$words[2]
  shift words  # _arguments sees the subcommand's own words
  (( CURRENT-- ))
  case $cmd in
%s
    (*) _files ;;
  esac
}
_wardfs "$@"
""" % (cmd_lines, "\n".join(cases))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wardfs", required=True)
    ap.add_argument("--templates", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    root = Help(help_text(a.wardfs))
    commands = subcommands(root)
    if not commands:
        sys.exit("gen_docs: no subcommands found in wardfs --help")
    sections, per_command, per_command_help, mount_help = [], {}, {}, None
    choices, nested, pages = {}, {}, {}
    for name, summary in commands:
        text, h = command_section(a.wardfs, name, summary)
        sections.append(text)
        opts = [e for e in h.entries("Options") if e[0].startswith("-")]
        per_command[name] = [n for e in opts for n in option_names(e[0])]
        # "--keyfile TEXT ...": the option takes a value; "--json": a flag.
        per_command_help[name] = [(n, " ".join(e[1])[:100], len(e[0].split()) > 1)
                                  for e in opts for n in option_names(e[0])]
        for e in opts:
            for n in option_names(e[0]):
                if choices_of(e[0]):
                    choices[n] = choices_of(e[0])
        nested[name] = [n.split(",")[0].split()[0] for n, _ in h.entries("Subcommands")]
        pages[name] = command_page(name, text, h, a.version)
        if name == "mount":
            mount_help = h
    if mount_help is None:
        sys.exit("gen_docs: no mount subcommand")

    values = {
        "VERSION": a.version,
        "SYNOPSIS": ".B wardfs\n" + roff_escape(root.usage.replace("wardfs ", "", 1)),
        "DESCRIPTION": roff_escape(" ".join(root.description)),
        "COMMANDS": "\n".join(sections),
        "GLOBAL_OPTIONS": roff_entries(root.entries("Options")),
        "EXIT_STATUS": roff_entries([(line.split()[0], [" ".join(line.split()[1:])])
                                     for line in root.footer if re.match(r"^\s+\d+\s", line)]),
    }
    write(os.path.join(a.out, "wardfs.1.gz"), fill(os.path.join(a.templates, "wardfs.1.in"), values), True)
    values5 = {"VERSION": a.version, "MOUNT_OPTIONS": roff_entries(mount_options(mount_help))}
    write(os.path.join(a.out, "wardfs-mount-options.5.gz"),
          fill(os.path.join(a.templates, "wardfs-mount-options.5.in"), values5), True)
    mount_rows = mount_options(mount_help)
    names = o_words(mount_rows)
    write(os.path.join(a.out, "wardfs.bash"), bash_completion(commands, per_command, choices, nested, names))
    write(os.path.join(a.out, "_wardfs"), zsh_completion(commands, per_command_help, choices, nested, names))
    os.makedirs(os.path.join(a.out, "man1"), exist_ok=True)
    for name, page in pages.items():
        write(os.path.join(a.out, "man1", "wardfs-%s.1.gz" % name), page, True)
    values8 = {"VERSION": a.version, "MOUNT_OPTIONS": roff_entries(mount_rows)}
    write(os.path.join(a.out, "mount.fuse.wardfs.8.gz"),
          fill(os.path.join(a.templates, "mount.fuse.wardfs.8.in"), values8), True)


if __name__ == "__main__":
    main()
