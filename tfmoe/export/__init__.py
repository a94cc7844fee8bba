"""SavedModel export that bundles the tokenizer and the model (TF Serving ready).

```python
tfmoe.export.export_saved_model(model, tokenizer, "saved_models/clf/1",
                                label_names=["neg", "pos"], sequence_length=128)
```
Signatures per model kind: see `export_saved_model`; serving how-to: `docs/serving.md`.
"""

from tfmoe.export.options import ExportOptions
from tfmoe.export.saved_model import export_saved_model

__all__ = ["ExportOptions", "export_saved_model"]
