"""The version of rota, in a leaf module so that any layer can name it without importing the
package face (`rota/__init__.py`)."""

__version__ = "0.1.0"
