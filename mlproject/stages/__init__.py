"""One module per pipeline stage, each a `run(params, args)` that `mlproject <stage>` calls: it
reads typed params, calls the library (data/, models/, tracking/) and says what it wrote."""
