"""The only code that imports torch. Commands import it lazily."""
