"""The agent loop and its features: the model chain, tool middleware, metering, the
decision cache and replay. The domain (types, tools, providers) is rota.agents."""
