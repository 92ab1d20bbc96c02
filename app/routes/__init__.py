"""One APIRouter per resource; routes parse, call the service once, and return a schema."""
