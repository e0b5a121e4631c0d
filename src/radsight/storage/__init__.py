"""Where the bytes of each instance live, exactly as received.

The index only knows a storage *key*; the backend maps keys to bytes. The file system
backend is the default; an object-storage backend implements the same protocol.
"""

from radsight.storage.base import Storage, StorageError
from radsight.storage.filesystem import FileSystemStorage

__all__ = ["FileSystemStorage", "Storage", "StorageError"]
