"""LLM judges: connections, the prompt, the async executor."""
