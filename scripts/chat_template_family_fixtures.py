"""Makes the chat template fixtures in fixtures/chat_templates/: for each model family, the
model's own Jinja chat template and special tokens as the model ships them
(tokenizer_config.json, or chat_template.jinja beside it), and expected.json with what
`transformers`' `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`
renders for a set of conversations, with and without the generation prompt, or the
message the template raises. The Rust test crates/tokenize/tests/chat_templates.rs renders
the same conversations with manabi's `ChatTemplate` and must give the same bytes.

No download is needed: the templates are written below, and each fixture is loaded with
`AutoTokenizer.from_pretrained` from a temporary copy of the folder plus the tiny
fixtures/tokenize/bpe-en/tokenizer.json (only the template and the special tokens matter).

    pip install transformers jinja2
    python3 scripts/chat_template_family_fixtures.py

Sources of the templates (copied verbatim from the models' tokenizer_config.json):
- llama-3.1: meta-llama/Llama-3.1-8B-Instruct (date_string defaults to "26 Jul 2024");
  stored as chat_template.jinja, the layout recent transformers versions save.
- qwen2.5: Qwen/Qwen2.5-7B-Instruct (ChatML with the default system prompt; no bos_token).
- gemma-2: google/gemma-2-2b-it (the same text as gemma-7b-it); raises on a system role
  and on roles that do not alternate.
- mistral-v0.3: mistralai/Mistral-7B-Instruct-v0.3 ([INST], the system message before the
  last user turn, raises on roles that do not alternate); the special tokens are written
  in the `{"__type": "AddedToken", "content": ...}` form older configs use.
- llm-jp-3: llm-jp/llm-jp-3-*-instruct (Japanese: `### 指示:` / `### 応答:` with a fixed
  system sentence).
- helpers: not a model's; a template of ours that exercises what transformers adds to
  Jinja and what templates call (tojson with its options, raise_exception, namespace,
  loop controls, Python string methods, special-token variables that are not set).
"""

import json
import shutil
import tempfile
from pathlib import Path

import jinja2
import transformers
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "chat_templates"
TOKENIZER = ROOT / "fixtures" / "tokenize" / "bpe-en" / "tokenizer.json"

LLAMA_31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

QWEN_25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

GEMMA_2 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

MISTRAL_V03 = r"""{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

LLM_JP_3 = (
    "{{bos_token}}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '\\n\\n### 指示:\\n' + message['content'] }}{% elif message['role'] == 'system' %}"
    "{{ '以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。' }}"
    "{% elif message['role'] == 'assistant' %}{{ '\\n\\n### 応答:\\n' + message['content'] + eos_token }}"
    "{% endif %}{% if loop.last and add_generation_prompt %}{{ '\\n\\n### 応答:\\n' }}{% endif %}"
    "{% endfor %}"
)

# Ours: every helper and Python-ism a Hub template leans on, in one template. Written with
# trim_blocks / lstrip_blocks in mind (block tags on their own lines, indented).
HELPERS = r"""{%- set ns = namespace(users=0, last='') %}
{%- for m in messages %}
    {%- if m.role == 'user' %}
        {%- set ns.users = ns.users + 1 %}
        {%- set ns.last = m.content %}
    {%- endif %}
{%- endfor %}
users={{ ns.users }} last={{ ns.last | tojson }}
{% for m in messages %}
    {% if loop.index0 > 4 %}{% break %}{% endif %}
    {% if m.role == 'system' %}{% continue %}{% endif %}
[{{ loop.index }}/{{ loop.length }}] {{ m.role | upper }} {{ m.content.strip() }}|{{ m.content | trim }}|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}
    starts={{ m.content.startswith('W') }} ends={{ m.content.endswith('?') }} words={{ m.content.split() | length }} title={{ m.role.title() }}
{% endfor %}
json={{ messages | tojson }}
sorted={{ messages[0] | tojson(sort_keys=true) }}
indented={{ messages[:2] | tojson(indent=2) }}
tight={{ messages[0] | tojson(separators=(',', ':')) }}
ascii={{ messages[-1].content | tojson(ensure_ascii=true) }}
values={{ {'n': 3, 'x': 1.5, 'big': 1e20, 'small': 0.0001, 'none': none, 'yes': true, 'no': false, 'list': [], 'map': {}} | tojson }}
escapes={{ "quote \" backslash \\ tab \t nl \n bell \x07 del \x7f é ✓ 😀" | tojson }}
{{ 'bos=' ~ bos_token ~ ' eos=' ~ eos_token }} unk={{ unk_token is defined }} pad={{ pad_token is defined }} tools={{ tools is none }} documents={{ documents is none }}
roles={{ messages | map(attribute='role') | unique | join(',') }} users={{ messages | selectattr('role', 'equalto', 'user') | list | length }}
{% if messages | length > 7 %}{{ raise_exception('Too many messages: ' ~ messages | length) }}{% endif %}
{% if add_generation_prompt %}<assistant>{% endif %}
"""

FAMILIES = {
    "llama-3.1": {
        "source": "meta-llama/Llama-3.1-8B-Instruct",
        "template": LLAMA_31,
        "jinja_file": True,
        "special": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    },
    "qwen2.5": {
        "source": "Qwen/Qwen2.5-7B-Instruct",
        "template": QWEN_25,
        "special": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                    "unk_token": None},
    },
    "gemma-2": {
        "source": "google/gemma-2-2b-it",
        "template": GEMMA_2,
        "special": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
                    "pad_token": "<pad>"},
    },
    "mistral-v0.3": {
        "source": "mistralai/Mistral-7B-Instruct-v0.3",
        "template": MISTRAL_V03,
        "special": {
            name: {"__type": "AddedToken", "content": content, "lstrip": False,
                   "normalized": False, "rstrip": False, "single_word": False}
            for name, content in (("bos_token", "<s>"), ("eos_token", "</s>"),
                                  ("unk_token", "<unk>"))
        },
    },
    "llm-jp-3": {
        "source": "llm-jp/llm-jp-3-1.8b-instruct",
        "template": LLM_JP_3,
        "special": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk|LLM-jp>",
                    "pad_token": "<PAD|LLM-jp>", "cls_token": "<CLS|LLM-jp>",
                    "sep_token": "<SEP|LLM-jp>", "mask_token": "<MASK|LLM-jp>"},
    },
    "helpers": {
        "source": "manabi (written for this test)",
        "template": HELPERS,
        "special": {"bos_token": "<bos>", "eos_token": "<eos>"},
    },
}


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


CONVERSATIONS = {
    "en-one-turn": [m("user", "What is the capital of France?")],
    "en-system-multi-turn": [
        m("system", "You are a concise assistant. Answer in one sentence."),
        m("user", "What is the capital of France?"),
        m("assistant", "The capital of France is Paris."),
        m("user", "And of Japan?"),
    ],
    "en-ends-with-assistant": [
        m("user", "Name a colour."),
        m("assistant", "Blue."),
    ],
    "ja-multi-turn": [
        m("user", "日本の首都はどこですか？"),
        m("assistant", "東京です。"),
        m("user", "人口はどのくらいですか？"),
    ],
    "ja-system": [
        m("system", "あなたは誠実で優秀な日本人のアシスタントです。特に指示が無い場合は、常に日本語で回答してください。"),
        m("user", "吾輩は猫である。名前はまだ無い。この文の作者は誰ですか？"),
    ],
    "whitespace-and-markup": [
        m("user", "  \n\u3000全角スペースと改行で囲まれた質問です。\u3000\n "),
        m("assistant", "\n Answer with {{ braces }}, {% tags %}, \"quotes\", \\backslashes\\ and <|eot_id|>. \n"),
        m("user", "Why? 🤔\t"),
    ],
    "two-users-in-a-row": [
        m("user", "First question."),
        m("user", "Second question."),
    ],
    "system-and-many-turns": [
        m("system", "Be brief."),
        *[m("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(7)],
    ],
}


def render(tok, messages, add_generation_prompt: bool) -> dict:
    try:
        text = tok.apply_chat_template(messages, tokenize=False,
                                       add_generation_prompt=add_generation_prompt)
        return {"text": text}
    except jinja2.exceptions.TemplateError as e:
        return {"raises": str(e)}


def main() -> None:
    for family, spec in FAMILIES.items():
        out = OUT / family
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        config = {"tokenizer_class": "PreTrainedTokenizerFast", **spec["special"]}
        if spec.get("jinja_file"):
            (out / "chat_template.jinja").write_text(spec["template"], encoding="utf-8")
        else:
            config["chat_template"] = spec["template"]
        (out / "tokenizer_config.json").write_text(
            json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

        with tempfile.TemporaryDirectory() as tmp:
            for f in out.iterdir():
                shutil.copy(f, tmp)
            shutil.copy(TOKENIZER, Path(tmp) / "tokenizer.json")
            tok = AutoTokenizer.from_pretrained(tmp)
        assert tok.chat_template == spec["template"], family
        cases = []
        for name, messages in CONVERSATIONS.items():
            without = render(tok, messages, False)
            with_prompt = render(tok, messages, True)
            case = {"name": name, "messages": messages}
            if "raises" in without or "raises" in with_prompt:
                assert without == with_prompt, (family, name)
                case["raises"] = without["raises"]
            else:
                case["text"] = without["text"]
                case["prompt"] = with_prompt["text"]
            cases.append(case)
        expected = {
            "family": family,
            "source": spec["source"],
            "transformers": transformers.__version__,
            "jinja2": jinja2.__version__,
            "special_tokens": tok.special_tokens_map,
            "cases": cases,
        }
        (out / "expected.json").write_text(
            json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        raised = sum("raises" in c for c in cases)
        print(f"{family}: {len(cases)} conversations, {raised} raise; "
              f"special tokens {tok.special_tokens_map}")


if __name__ == "__main__":
    main()
