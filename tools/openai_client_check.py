#!/usr/bin/env python3
"""Check `moepack serve` with the real `openai` Python client.

Starts `moepack serve --api-key` on the tiny model (or --model) on a free loopback port, then:
  - a client with a wrong API key gets an AuthenticationError (401), the others use the key;
  - lists models; completion and chat completion, each with stream false and true;
  - streamed text equals the non-streamed text (greedy), usage counts are consistent;
  - greedy output equals `moepack run` greedy output for the same prompt, also with the presence,
    frequency and repetition penalties;
  - log-probabilities of completion and chat tokens come back in the shapes the client parses;
  - an unknown model is a NotFoundError (404), a bad parameter a BadRequestError (400);
  - SIGTERM makes the server exit with status 0.

Run from the repository root after `swift build` (or `swift build -c release`):
    .venv/bin/python tools/openai_client_check.py [--moepack .build/debug/moepack] [--model DIR]
(tools/setup.sh makes .venv with the openai client.)
Exit status 0 when every check passes.
"""

import argparse
import subprocess
import sys

import openai

from serve_harness import TINY_MODEL, Server, default_binary, fail

PROMPT = "The little robot"
MAX_TOKENS = 24


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


API_KEY = "check-key"
PENALTIES = {"frequency_penalty": 0.8, "presence_penalty": 0.4, "repetition_penalty": 1.2}


def run_greedy(binary, model, prompt, max_tokens, chat_system=None, penalties=None):
    """`moepack run`'s greedy output for `prompt` (it prints the generated text and a newline)."""
    args = [binary, "run", model, "--prompt", prompt, "--max-tokens", str(max_tokens), "--temperature", "0"]
    if chat_system is not None:
        args += ["--chat", "--system", chat_system]
    for name, value in (penalties or {}).items():
        args += ["--" + name.replace("_", "-"), str(value)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        fail(f"moepack run failed: {out.stderr}")
    return out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moepack", default=default_binary())
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--skip-run-compare", action="store_true", help="do not compare with `moepack run`")
    args = parser.parse_args()

    server = Server(args.moepack, args.model, ["--api-key", API_KEY])
    try:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, timeout=120, max_retries=0)
        try:
            openai.OpenAI(base_url=server.base_url + "/v1", api_key="wrong", max_retries=0).models.list()
            fail("a wrong API key was accepted")
        except openai.AuthenticationError as error:
            check(error.status_code == 401, "a wrong API key -> 401 AuthenticationError")
        models = client.models.list()
        model = models.data[0].id
        check(len(models.data) == 1 and model, f"models.list names the model ({model})")

        completion = client.completions.create(model=model, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
        text = completion.choices[0].text
        check(completion.object == "text_completion", "completion object type")
        check(completion.usage.completion_tokens >= 1 and completion.usage.prompt_tokens >= 1, "completion usage")
        check(completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens,
              "completion usage total")
        check(completion.choices[0].finish_reason in ("stop", "length"), "completion finish reason")
        print(f"   completion: {PROMPT!r} -> {text!r}")

        pieces, finish = [], None
        for chunk in client.completions.create(model=model, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
                                               stream=True):
            if chunk.choices:
                pieces.append(chunk.choices[0].text)
                finish = chunk.choices[0].finish_reason or finish
        check("".join(pieces) == text, "streamed completion equals the non-streamed one")
        check(finish == completion.choices[0].finish_reason, "streamed completion finish reason")

        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Tell me about the sea."}]
        chat = client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
        answer = chat.choices[0].message.content
        check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", "chat object and role")
        check(chat.usage.completion_tokens >= 1, "chat usage")
        print(f"   chat: -> {answer!r}")

        pieces, usage, roles = [], None, []
        stream = client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.role:
                    roles.append(choice.delta.role)
                if choice.delta.content:
                    pieces.append(choice.delta.content)
        check("".join(pieces) == answer, "streamed chat equals the non-streamed one")
        check(roles == ["assistant"], "the first chunk names the assistant role")
        check(usage is not None and usage.completion_tokens == chat.usage.completion_tokens, "stream usage chunk")

        sampled = [client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0.9, top_p=0.9,
                                             seed=7, extra_body={"top_k": 40}).choices[0].text for _ in range(2)]
        check(sampled[0] == sampled[1], "the same seed gives the same sample")
        several = client.completions.create(model=model, prompt=PROMPT, max_tokens=12, temperature=0.9, top_p=0.9,
                                            seed=7, extra_body={"top_k": 40}, n=3)
        check(sorted(c.index for c in several.choices) == [0, 1, 2] and several.choices[0].text == sampled[0],
              "n=3 gives three choices, the first the one-choice sample with the same seed")

        penalised = client.completions.create(
            model=model, prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0,
            frequency_penalty=PENALTIES["frequency_penalty"], presence_penalty=PENALTIES["presence_penalty"],
            extra_body={"repetition_penalty": PENALTIES["repetition_penalty"]}).choices[0].text
        check(penalised != text, "penalties change the greedy completion")
        print(f"   with penalties: {PROMPT!r} -> {penalised!r}")

        scored = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2)
        listing = scored.choices[0].logprobs
        check(len(listing.token_logprobs) == scored.usage.completion_tokens == len(listing.tokens)
              and "".join(listing.tokens) == scored.choices[0].text, "completion logprobs: one per token, spelling the text")
        check(all(top[token] == value for top, token, value in zip(listing.top_logprobs, listing.tokens, listing.token_logprobs)),
              "completion logprobs: the chosen token is in each top map")
        scored_chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                                     logprobs=True, top_logprobs=2)
        content = scored_chat.choices[0].logprobs.content
        check(len(content) == scored_chat.usage.completion_tokens and all(len(e.top_logprobs) == 2 for e in content)
              and all(e.top_logprobs[0].logprob == e.logprob <= 0 for e in content),
              "chat logprobs: one entry per token, the greedy choice first in its top list")

        try:
            client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
            fail("unknown model was accepted")
        except openai.NotFoundError as error:
            check(error.status_code == 404, "unknown model -> 404 NotFoundError")
        try:
            client.completions.create(model=model, prompt="x", max_tokens=-1)
            fail("negative max_tokens was accepted")
        except openai.BadRequestError as error:
            check(error.status_code == 400 and error.body.get("param") == "max_tokens", "negative max_tokens -> 400")

        if not args.skip_run_compare:
            cli = run_greedy(args.moepack, args.model, PROMPT, MAX_TOKENS)
            check(cli == text, f"greedy completion equals `moepack run` ({cli!r})")
            cli_chat = run_greedy(args.moepack, args.model, messages[1]["content"], MAX_TOKENS,
                                  chat_system=messages[0]["content"])
            check(cli_chat == answer, f"greedy chat equals `moepack run --chat` ({cli_chat!r})")
            cli_penalised = run_greedy(args.moepack, args.model, PROMPT, MAX_TOKENS, penalties=PENALTIES)
            check(cli_penalised == penalised, f"greedy completion with penalties equals `moepack run` ({cli_penalised!r})")
    finally:
        code = server.stop()
    check(code == 0, f"SIGTERM: the server exited with status {code}")
    print("all checks passed")


if __name__ == "__main__":
    main()
