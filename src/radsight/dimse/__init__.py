"""DICOM networking (pynetdicom): the SCP on --dicom-port and the SCU for sending."""
