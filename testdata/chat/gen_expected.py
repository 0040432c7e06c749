#!/usr/bin/python3
"""Render every template x conversation x add_generation_prompt of this directory as
Hugging Face transformers' apply_chat_template does (Python jinja2 3.1, configured as
the shared test data's chat/README.md describes), and write expected.json.

Run from this directory: python3 gen_expected.py
"""
import datetime
import json
import os

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_DATE = datetime.datetime(2026, 1, 15, 0, 0, 0, tzinfo=datetime.timezone.utc)


class GenerationTracker(Extension):
    """{% generation %}...{% endgeneration %} renders its body, as in transformers."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return FIXED_DATE.strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True,
        extensions=[GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    env = environment()
    with open("special_tokens.json", encoding="utf-8") as f:
        special = json.load(f)
    cases = []
    for tname in sorted(os.listdir("templates")):
        with open(os.path.join("templates", tname), encoding="utf-8", newline="") as f:
            source = f.read()
        template = env.from_string(source)
        tokens = special[tname]
        for cname in sorted(os.listdir("conversations")):
            with open(os.path.join("conversations", cname), encoding="utf-8") as f:
                conv = json.load(f)
            for agp in (False, True):
                case = {"template": tname, "conversation": cname, "add_generation_prompt": agp}
                try:
                    case["output"] = template.render(
                        messages=conv["messages"], tools=conv.get("tools"), documents=None,
                        add_generation_prompt=agp,
                        bos_token=tokens["bos_token"] or "", eos_token=tokens["eos_token"] or "")
                except Exception as e:  # any exception: lmrun must fail too
                    case["error"] = "%s: %s" % (type(e).__name__, e)
                cases.append(case)
    with open("expected.json", "w", encoding="utf-8", newline="") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
