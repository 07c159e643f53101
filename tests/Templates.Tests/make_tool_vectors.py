"""Renders every fixture chat template with tool, reasoning and multi-part conversations using Jinja2 (3.1.x)
set up as transformers does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls, tojson
without ASCII escaping, raise_exception, strftime_now pinned to 2026-11-23 12:00). Writes tool-vectors.json.

Run from this folder: python3 make_tool_vectors.py
"""
import json, glob, os, datetime
import jinja2, jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))

def raise_exception(message): raise jinja2.exceptions.TemplateError(message)
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
def strftime_now(fmt): return datetime.datetime(2026, 11, 23, 12, 0, 0).strftime(fmt)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = strftime_now

tools = [
  {"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city.\nReturns text.",
   "parameters": {"type": "object", "properties": {
      "city": {"type": "string", "description": "City name"},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
      "days": {"type": "integer", "description": "How many days", "minimum": 1},
      "ratio": {"type": "number"},
      "flags": {"type": "array", "items": {"type": "string"}},
      "opts": {"type": "object", "properties": {"x": {"type": "boolean"}}},
      "maybe": {"type": ["string", "null"]}},
    "required": ["city"]}}},
  {"type": "function", "function": {"name": "noop", "description": "Does nothing", "parameters": {"type": "object", "properties": {}}}},
]
call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2, "ratio": 0.5, "flags": ["a"]}}}
call_str = {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": "{\"x\": 1}"}}
convs = {
  "tools_user": [{"role": "system", "content": "Sys"}, {"role": "user", "content": "Weather in Paris?"}],
  "tool_roundtrip": [{"role": "user", "content": "Weather?"},
                     {"role": "assistant", "content": "", "tool_calls": [call]},
                     {"role": "tool", "content": "{\"temp\": 20}", "tool_call_id": "call_1", "name": "get_weather"},
                     {"role": "assistant", "content": "It is 20."},
                     {"role": "user", "content": "Thanks"}],
  "tool_strargs": [{"role": "user", "content": "Go"},
                   {"role": "assistant", "content": None, "tool_calls": [call_str]},
                   {"role": "tool", "content": "done", "tool_call_id": "call_2"}],
  "reasoning": [{"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1", "reasoning_content": "hmm"},
                {"role": "user", "content": "Q2"}],
  "parts": [{"role": "user", "content": [{"type": "text", "text": "Look"}, {"type": "image"}, {"type": "text", "text": "here"}]}],
}
out = []
for path in sorted(glob.glob(os.path.join(HERE, "..", "..", "..", "..", "shared", "fixtures", "chat-templates", "templates", "*.jinja"))):
    name = os.path.basename(path)
    src = open(path, encoding="utf-8").read()
    t = env.from_string(src)
    for cname, msgs in convs.items():
        for extra in [{"tools": tools}, {"tools": tools, "enable_thinking": False, "reasoning_effort": "high"}] if cname.startswith("tool") else [{}, {"enable_thinking": True}]:
            ctx = {"messages": msgs, "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>", **extra}
            e = {"template": name, "conversation": cname, "context": ctx}
            try: e["expected"] = t.render(**ctx)
            except Exception as ex: e["error"] = f"{type(ex).__name__}: {ex}"
            out.append(e)
with open(os.path.join(HERE, "tool-vectors.json"), "w", encoding="utf-8") as f:
    json.dump({"generator": f"Jinja2 {jinja2.__version__}", "vectors": out}, f, ensure_ascii=False, indent=0)
    f.write("\n")
print(len(out), sum('error' in e for e in out))
