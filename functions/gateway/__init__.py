"""The edge gateway: a FastAPI app on Lambda (through Mangum) that turns HTTP into mesh calls."""
