"""Getting data in: the records and their validation (`records`), the file and data set readers
shared by `refinery send` and `refinery replay` (`readers`), the sender (`sender`), and the
bundled data sets (`datasets`)."""

__all__: list[str] = []
