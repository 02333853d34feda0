"""The neutral spec: validated models of tasks, optimizers and decay rules, case and sweep files, input errors
and the memory budget. Pure data and validation (pydantic); imports only the engine below it."""
