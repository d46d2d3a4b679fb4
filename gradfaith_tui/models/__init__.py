"""Stage 2: build timm models, train them, evaluate them (Table I, confusion matrices)."""
