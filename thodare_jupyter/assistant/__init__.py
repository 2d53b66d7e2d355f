"""The assistant: a request in words becomes validated EditOps (DESIGN §7)."""

from .diff import WorkflowDiff, workflow_diff
from .loop import Assistant, Proposal
from .providers import AnthropicChat, ChatModel, OpenAIChat, model_from_env

__all__ = [
    "AnthropicChat",
    "Assistant",
    "ChatModel",
    "OpenAIChat",
    "Proposal",
    "WorkflowDiff",
    "model_from_env",
    "workflow_diff",
]
