"""Request bodies, in OpenAI's shapes plus text2lora's ``task_description`` and ``examples``; unknown fields are
ignored. ``examples`` (a list of ``{"input", "output"}`` objects) is checked by :func:`text2lora.examples.
check_examples`, the validator the CLI and the API use, so its messages name the bad example."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Number = Union[StrictInt, StrictFloat]


def _encodable(text: str) -> str:
    """Refuse text that cannot be encoded (a lone surrogate such as "\\ud83d"): a 400, not a 500 later on."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (it holds a lone surrogate)") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AdapterRequest(_Body):
    description: Text
    examples: list[Any] | None = None


class TextPart(_Body):
    type: Literal["text"]
    text: Text


class Message(_Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: Union[Text, list[TextPart], None] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: StrictBool = False


class _Generation(_Body):
    model: Text = "base"
    task_description: Text | None = None
    examples: list[Any] | None = None  #: worked examples for the task_description's adapter
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: Number = Field(default=1.0, ge=0.0, le=2.0)
    top_p: Number = Field(default=1.0, gt=0.0, le=1.0)
    n: StrictInt = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    stop: Union[Text, list[Text], None] = None
    seed: StrictInt | None = Field(default=None, ge=0, le=2**63 - 1)
    ignore_eos: StrictBool = False  #: as in vLLM: generate exactly max_tokens tokens (benchmarks)

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatRequest(_Generation):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)

    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Generation):
    prompt: Union[Text, list[Text]]
    echo: StrictBool = False

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def token_budget(self) -> int | None:
        return self.max_tokens
