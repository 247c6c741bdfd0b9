"""LLM provider clients (openai Chat Completions and Responses, anthropic Messages)."""
